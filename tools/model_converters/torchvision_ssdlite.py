"""Convert torchvision's SSDLite (``ssdlite320_mobilenet_v3_large``) to our SSDLite.

    python tools/model_converters/torchvision_ssdlite.py \
        ssdlite320_mobilenet_v3_large_coco-a79551df.pth \
        ssdlite_v3_large_reduced_torchvision_coco.pth

SRC is a state dict as torchvision saves it. DST holds ``state_dict`` (``backbone.*``,
``neck.*``, ``bbox_head.*``) and ``meta``; it loads strictly into the model of
``configs/ssdlite_v3_large_reduced_torchvision_coco.py`` (``load_from=DST``, or
``tools/test.py CONFIG DST``). torchvision's 91 COCO labels become mmdet's 80 COCO
classes (background last; the 10 unused N/A labels are dropped).
"""
# Only argparse here (mobilenet_tasks.converters.cli builds the parser): the converter
# and torch load in main() once the arguments are parsed, so --help and an argument
# error answer at once.
from mobilenet_tasks.converters.cli import (convert_and_save, converter_parser,
                                            count_tensors)


def main(argv=None):
    parser = converter_parser(
        'Convert a torchvision SSDLite (MobileNetV3) checkpoint to mobilenet_tasks '
        '(mmdet)', target_eps_help="ours and torchvision's")
    args = parser.parse_args(argv)
    from mobilenet_tasks.converters.torchvision_ssdlite import (
        convert_torchvision_ssdlite)

    def summary(converted, info):
        yield 'backbone', (f'{count_tensors(converted, "backbone")} tensors -> '
                           f'{info.meta()["backbone"]}')
        yield 'neck', (f'{count_tensors(converted, "neck")} tensors -> '
                       f'extra_channels={info.extra_channels}')
        yield 'bbox_head', (f'{count_tensors(converted, "bbox_head")} tensors -> '
                            f'num_classes={info.num_classes}')

    convert_and_save(args, convert_torchvision_ssdlite, summary)


if __name__ == '__main__':
    main()
