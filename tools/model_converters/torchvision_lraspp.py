"""Convert torchvision's LR-ASPP (``lraspp_mobilenet_v3_large``) to our mmseg model.

    python tools/model_converters/torchvision_lraspp.py \
        lraspp_mobilenet_v3_large-d234d4ea.pth lraspp_v3_large_torchvision_voc.pth

SRC is a state dict as torchvision saves it. DST holds ``state_dict``
(``backbone.layers.*``, ``decode_head.*``) and ``meta``; it loads strictly into the
model of ``configs/lraspp_v3_large_torchvision_voc.py`` (``load_from=DST``, or
``tools/test.py CONFIG DST``), which predicts torchvision's 21 classes (background +
the 20 Pascal VOC categories, in mmseg's PascalVOCDataset order).
"""
# Only argparse here (mobilenet_tasks.converters.cli builds the parser): the converter
# and torch load in main() once the arguments are parsed, so --help and an argument
# error answer at once.
from mobilenet_tasks.converters.cli import (convert_and_save, converter_parser,
                                            count_tensors)




def main(argv=None):
    parser = converter_parser(
        'Convert a torchvision LR-ASPP (MobileNetV3-Large) checkpoint to '
        'mobilenet_tasks (mmseg)', target_eps_help="ours and torchvision's")
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes of the model that will load the weights (its '
                        'decode_head.num_classes; default: those of '
                        'configs/lraspp_v3_large_torchvision_voc.py, background + '
                        'the 20 Pascal VOC classes, as torchvision\'s)')
    parser.add_argument('--channels', type=int, default=None,
                        help='its decode_head.channels (torchvision\'s inter_channels; '
                        'default: the config\'s)')
    args = parser.parse_args(argv)
    from mobilenet_tasks.converters.torchvision_lraspp import convert_torchvision_lraspp

    def summary(converted, info):
        for part in ('backbone', 'decode_head'):
            yield part, (f'{count_tensors(converted, part)} tensors -> '
                         f'{info.meta()[part]}')

    given = dict(num_classes=args.num_classes, channels=args.channels)
    convert_and_save(args, convert_torchvision_lraspp, summary,
                     **{k: v for k, v in given.items() if v is not None})


if __name__ == '__main__':
    main()
