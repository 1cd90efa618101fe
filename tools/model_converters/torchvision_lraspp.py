"""Convert torchvision's LR-ASPP (``lraspp_mobilenet_v3_large``) to our mmseg model.

    python tools/model_converters/torchvision_lraspp.py \
        lraspp_mobilenet_v3_large-d234d4ea.pth lraspp_v3_large_torchvision_voc.pth

SRC is a state dict as torchvision saves it. DST holds ``state_dict``
(``backbone.layers.*``, ``decode_head.*``) and ``meta``; it loads strictly into the
model of ``configs/lraspp_v3_large_torchvision_voc.py`` (``load_from=DST``, or
``tools/test.py CONFIG DST``), which predicts torchvision's 21 classes (background +
the 20 Pascal VOC categories, in mmseg's PascalVOCDataset order).
"""
from mobilenet_tasks.converters.cli import (convert_and_save, converter_parser,
                                            count_tensors)
from mobilenet_tasks.converters.torchvision_lraspp import (CONFIG_CHANNELS,
                                                           CONFIG_NUM_CLASSES,
                                                           convert_torchvision_lraspp)


def main(argv=None):
    parser = converter_parser(
        'Convert a torchvision LR-ASPP (MobileNetV3-Large) checkpoint to '
        'mobilenet_tasks (mmseg)', target_eps_help="ours and torchvision's")
    parser.add_argument('--num-classes', type=int, default=CONFIG_NUM_CLASSES,
                        help='classes of the model that will load the weights (its '
                        'decode_head.num_classes; default %(default)s, the config\'s '
                        'Pascal VOC classes and torchvision\'s)')
    parser.add_argument('--channels', type=int, default=CONFIG_CHANNELS,
                        help='its decode_head.channels (torchvision\'s inter_channels; '
                        'default %(default)s)')
    args = parser.parse_args(argv)

    def summary(converted, info):
        for part in ('backbone', 'decode_head'):
            yield part, (f'{count_tensors(converted, part)} tensors -> '
                         f'{info.meta()[part]}')

    convert_and_save(args, convert_torchvision_lraspp, summary,
                     num_classes=args.num_classes, channels=args.channels)


if __name__ == '__main__':
    main()
