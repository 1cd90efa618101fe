"""Convert an mmpretrain MobileNetV3 checkpoint (arch ``large``, ``small`` or
``small_075``) to ours.

    python tools/model_converters/mmpretrain_mobilenet_v3.py \
        mobilenet-v3-large_8xb128_in1k_20221114-0ed9ed9a.pth \
        mobilenet-v3-large_mmpretrain.pth

SRC is an mmpretrain checkpoint (``state_dict`` with ``backbone.layer0...`` and
``head.*``); its ``backbone.layerN`` become our ``backbone.layers.N`` and its head, the
same StackedLinearClsHead as our configs', is copied unchanged.
"""
# Only argparse here (mobilenet_tasks.converters.cli builds the parser): the converter
# and torch load in main() once the arguments are parsed, so --help and an argument
# error answer at once.
from mobilenet_tasks.converters.cli import backbone_parser, convert_backbone_and_save



def main(argv=None):
    args = backbone_parser('Convert an mmpretrain MobileNetV3 checkpoint to '
                           'mobilenet_tasks').parse_args(argv)
    from mobilenet_tasks.converters.mmpretrain import convert_mmpretrain_mobilenet_v3
    convert_backbone_and_save(args, convert_mmpretrain_mobilenet_v3)


if __name__ == '__main__':
    main()
