"""Print which layer of each backbone ends output stride 8, 16 and 32, and its channels
at each width, measured on the built backbones; with an FPN snippet for mmdet configs.

    python tools/analysis_tools/backbone_layers.py                # every backbone
    python tools/analysis_tools/backbone_layers.py --type MobileNetV3 --arch small \\
        --reduced-tail --widen-factor 0.75 1.0
    python tools/analysis_tools/backbone_layers.py --type MobileNetV2 \\
        --widen-factor 0.35 --set scale_last_conv=True
    python tools/analysis_tools/backbone_layers.py --markdown     # docs/backbones.md's
    python tools/analysis_tools/backbone_layers.py --update       # rewrite it in place

``--markdown`` prints the generated part of ``docs/backbones.md`` (between its marker
comments), ``--update`` writes it there; ``tests/test_tools/test_backbone_layers.py``
fails where the doc differs from it (``mobilenet_tasks.analysis.backbone_layers``).
"""
import argparse
import sys
from pathlib import Path

# Only argparse and mmengine's DictAction here: mobilenet_tasks.analysis.backbone_layers
# (torch, mmdet, mmseg, mmpretrain and the models) loads once the arguments are parsed,
# so --help and an argument error answer at once.
from mmengine.config import DictAction

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'backbones.md'
# Set by the table itself: every layer, every width given, output strides 32, 16, 8.
MEASURED = ('out_indices', 'expansion_indices', 'output_stride', 'widen_factor')


def all_layers(size):
    """:func:`mobilenet_tasks.analysis.backbone_layers.all_layers`, imported when called
    (and what main() calls, so that a test can replace it)."""
    from mobilenet_tasks.analysis import backbone_layers
    return backbone_layers.all_layers(size=size)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--type', help='one backbone: MobileNetV3, MobileNetV2, '
                        'MobileNetV1 or MnasNet (default: every backbone and width of '
                        'docs/backbones.md)')
    parser.add_argument('--arch', help="MobileNetV3's arch: 'large' or 'small'")
    parser.add_argument('--reduced-tail', action='store_true',
                        help='reduced_tail=True (MobileNetV3, MobileNetV2, MnasNet)')
    parser.add_argument('--widen-factor', type=float, nargs='+', default=[1.0],
                        help='widths to list (default 1.0); the snippet uses the last')
    parser.add_argument('--set', nargs='+', action=DictAction, default={},
                        metavar='KEY=VALUE',
                        help='other backbone arguments, e.g. with_last_conv=False')
    parser.add_argument('--size', type=int, default=64,
                        help='side of the zero input run (a multiple of 32)')
    parser.add_argument('--markdown', action='store_true',
                        help="print docs/backbones.md's generated part")
    parser.add_argument('--update', action='store_true',
                        help="rewrite docs/backbones.md's generated part")
    args = parser.parse_args()
    if args.type is None and (args.arch or args.reduced_tail or args.set
                              or args.widen_factor != [1.0]):
        parser.error('--arch, --reduced-tail, --widen-factor and --set need --type')
    if args.type is not None and (args.markdown or args.update):
        parser.error('--markdown and --update print every backbone: drop --type')
    clash = sorted(set(args.set) & set(MEASURED))
    if clash:
        parser.error(f'--set {", ".join(clash)}: the table sets these itself')
    if args.size <= 0 or args.size % 32:
        parser.error(f'--size must be a positive multiple of 32, got {args.size}')
    return args


def one_variant(args):
    """The :class:`~mobilenet_tasks.analysis.backbone_layers.Variant` of ``--type``."""
    from mobilenet_tasks.analysis.backbone_layers import Variant
    kwargs = dict(args.set)
    if args.arch is not None:
        kwargs['arch'] = args.arch
    if args.reduced_tail:
        kwargs['reduced_tail'] = True
    name = args.type + (f'({", ".join(f"{k}={v!r}" for k, v in kwargs.items())})'
                        if kwargs else '')
    return Variant(name, args.type, kwargs, tuple(args.widen_factor))


def main():
    args = parse_args()
    from mobilenet_tasks.analysis.backbone_layers import BACKBONES
    if args.type is not None and args.type not in BACKBONES:
        raise SystemExit(f'error: --type {args.type!r}: one of '
                         f'{", ".join(sorted(BACKBONES))}')
    from mobilenet_tasks.analysis.backbone_layers import (fpn_snippet, layers_markdown,
                                                          layers_text, replace_generated,
                                                          variant_layers)
    try:
        if args.markdown or args.update:
            generated = layers_markdown(all_layers(size=args.size))
            if args.markdown:
                print(generated, end='')
            if args.update:
                DOC.write_text(replace_generated(DOC.read_text(), generated))
                print(f'wrote {DOC}', file=sys.stderr)
            return
        if args.type is None:
            for layers in all_layers(size=args.size):
                print(layers_text(layers))
            return
        variant = one_variant(args)
        layers = variant_layers(variant, size=args.size)
        print(layers_text(layers))
        print(f'FPN on strides 8, 16, 32 at width {variant.widths[-1]}:\n')
        print(fpn_snippet(layers, variant.widths[-1]), end='')
    except (ValueError, TypeError, RuntimeError) as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
