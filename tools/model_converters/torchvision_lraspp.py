"""Convert torchvision's LR-ASPP (``lraspp_mobilenet_v3_large``) to our mmseg model.

    python tools/model_converters/torchvision_lraspp.py \
        lraspp_mobilenet_v3_large-d234d4ea.pth lraspp_v3_large_torchvision_voc.pth

SRC is a state dict as torchvision saves it. DST holds ``state_dict``
(``backbone.layers.*``, ``decode_head.*``) and ``meta``; it loads strictly into the
model of ``configs/lraspp_v3_large_torchvision_voc.py`` (``load_from=DST``, or
``tools/test.py CONFIG DST``), which predicts torchvision's 21 classes (background +
the 20 Pascal VOC categories, in mmseg's PascalVOCDataset order).
"""
import argparse

import torch

from mobilenet_tasks.converters.common import TARGET_EPS, load_source_state_dict
from mobilenet_tasks.converters.torchvision_lraspp import (CONFIG_CHANNELS,
                                                           CONFIG_NUM_CLASSES,
                                                           convert_torchvision_lraspp)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a torchvision LR-ASPP (MobileNetV3-Large) checkpoint to '
        'mobilenet_tasks (mmseg)')
    parser.add_argument('src', help='torchvision checkpoint (a state dict, or a dict '
                        'with "state_dict" or "model")')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    parser.add_argument('--num-classes', type=int, default=CONFIG_NUM_CLASSES,
                        help='classes of the model that will load the weights (its '
                        'decode_head.num_classes; default %(default)s, the config\'s '
                        'Pascal VOC classes and torchvision\'s)')
    parser.add_argument('--channels', type=int, default=CONFIG_CHANNELS,
                        help='its decode_head.channels (torchvision\'s inter_channels; '
                        'default %(default)s)')
    parser.add_argument('--target-bn-eps', type=float, default=TARGET_EPS,
                        help='backbone BN eps of the model that will load the weights '
                        '(the norm_cfg eps; default %(default)s, ours and '
                        'torchvision\'s)')
    parser.add_argument('--verbose', action='store_true',
                        help='print every tensor: source key -> our key')
    args = parser.parse_args(argv)

    state_dict = load_source_state_dict(args.src)
    try:
        converted, info = convert_torchvision_lraspp(
            state_dict, num_classes=args.num_classes, channels=args.channels,
            target_eps=args.target_bn_eps, return_info=True)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from e
    torch.save({'state_dict': converted, 'meta': info.meta()}, args.dst)

    counts = {part: sum(k.startswith(part + '.') for k in converted)
              for part in ('backbone', 'decode_head')}
    print(f'{args.src}: torchvision {info.arch}')
    print(f'  backbone:    {counts["backbone"]} tensors -> {info.meta()["backbone"]}')
    print(f'  decode_head: {counts["decode_head"]} tensors -> '
          f'{info.meta()["decode_head"]}')
    if info.config:
        print(f'  config:      {info.config}')
    for note in info.notes:
        print(f'  note:        {note}')
    if args.verbose:
        for dst, src in info.key_map.items():
            print(f'    {src} -> {dst}  {tuple(converted[dst].shape)}')
    print(f'saved {len(converted)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
