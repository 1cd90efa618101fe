"""Convert a timm MobileNetV3 (``mobilenetv3_large_*`` / ``mobilenetv3_small_*``),
MnasNet-A1 (``mnasnet_a1`` = ``semnasnet_100``) or MobileNetV2 (``mobilenetv2_*``)
checkpoint to ours.

    python tools/model_converters/timm_mobilenet.py mobilenetv3_large_100.pth \
        mobilenet-v3-large_timm.pth

SRC is a state dict as timm saves it (or a timm training checkpoint's ``state_dict``);
the arch and width are inferred from its shapes (``--arch`` forces the arch). timm's BN
eps 1e-5 is folded into the BN weights for ours (1e-3, ``--target-bn-eps``). Equivalent
at output stride 32: timm dilates one block later than ours for output stride 8 / 16.
timm's ``tf_*`` ports (TF padding, eps 1e-3) have the same keys and shapes but are not
equivalent: do not convert them.
"""
# Only argparse here (mobilenet_tasks.converters.cli builds the parser): the converter
# and torch load in main() once the arguments are parsed, so --help and an argument
# error answer at once.
from mobilenet_tasks.converters.cli import backbone_parser, convert_backbone_and_save




def main(argv=None):
    args = backbone_parser('Convert a timm MobileNetV3 / MnasNet-A1 / MobileNetV2 '
                           'checkpoint to mobilenet_tasks').parse_args(argv)
    from mobilenet_tasks.converters.timm import convert_timm
    convert_backbone_and_save(args, convert_timm)


if __name__ == '__main__':
    main()
