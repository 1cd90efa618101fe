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
import argparse

import torch

from mobilenet_tasks.converters.common import TARGET_EPS, load_source_state_dict
from mobilenet_tasks.converters.torchvision_ssdlite import convert_torchvision_ssdlite


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a torchvision SSDLite (MobileNetV3) checkpoint to '
        'mobilenet_tasks (mmdet)')
    parser.add_argument('src', help='torchvision checkpoint (a state dict, or a dict '
                        'with "state_dict" or "model")')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    parser.add_argument('--target-bn-eps', type=float, default=TARGET_EPS,
                        help='BN eps of the model that will load the weights (the '
                        'norm_cfg eps; default %(default)s, ours and torchvision\'s)')
    parser.add_argument('--verbose', action='store_true',
                        help='print every tensor: source key -> our key')
    args = parser.parse_args(argv)

    state_dict = load_source_state_dict(args.src)
    try:
        converted, info = convert_torchvision_ssdlite(
            state_dict, target_eps=args.target_bn_eps, return_info=True)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from e
    torch.save({'state_dict': converted, 'meta': info.meta()}, args.dst)

    counts = {part: sum(k.startswith(part + '.') for k in converted)
              for part in ('backbone', 'neck', 'bbox_head')}
    print(f'{args.src}: torchvision {info.arch}')
    print(f'  backbone:  {counts["backbone"]} tensors -> {info.meta()["backbone"]}')
    print(f'  neck:      {counts["neck"]} tensors -> extra_channels='
          f'{info.extra_channels}')
    print(f'  bbox_head: {counts["bbox_head"]} tensors -> num_classes='
          f'{info.num_classes}')
    if info.config:
        print(f'  config:    {info.config}')
    for note in info.notes:
        print(f'  note:      {note}')
    if args.verbose:
        for dst, src in info.key_map.items():
            print(f'    {src} -> {dst}  {tuple(converted[dst].shape)}')
    print(f'saved {len(converted)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
