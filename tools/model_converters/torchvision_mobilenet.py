"""Convert a torchvision MobileNetV3 (Large / Small, any reduced_tail / dilated) or
MobileNetV2 checkpoint to ours.

    python tools/model_converters/torchvision_mobilenet.py \
        mobilenet_v3_large-8738ca79.pth mobilenet-v3-large_torchvision.pth

SRC is a state dict as torchvision saves it; the arch, width and reduced tail are
inferred from its shapes (``--arch`` forces the arch). DST holds ``state_dict``
(``backbone.*`` and the classifier as mmpretrain's ``head.*``) and ``meta``; it loads
strictly into the classifier of the ``configs/classification/`` config the tool prints,
and into a lone backbone with
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
A reduced-tail model's classifier (hidden layer 640 / 512) has no config here: its
backbone loads as above, its head into a StackedLinearClsHead with the printed cfg.
"""
# Only argparse here (mobilenet_tasks.converters.cli builds the parser): the converter
# and torch load in main() once the arguments are parsed, so --help and an argument
# error answer at once.
from mobilenet_tasks.converters.cli import backbone_parser, convert_backbone_and_save



def main(argv=None):
    args = backbone_parser('Convert a torchvision MobileNetV3 / V2 checkpoint to '
                           'mobilenet_tasks').parse_args(argv)
    from mobilenet_tasks.converters.torchvision import convert_torchvision
    convert_backbone_and_save(args, convert_torchvision)


if __name__ == '__main__':
    main()
