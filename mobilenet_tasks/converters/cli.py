"""The command line of the converter tools (``tools/model_converters/``): their
arguments, and load, convert, save, print.

The one place where a conversion's errors become exits: the library functions raise
ValueError (and :func:`~mobilenet_tasks.utils.weights.load_weights` FileNotFoundError);
:func:`convert_and_save` turns them into ``SystemExit('error: ...')``.

Only argparse at the top: the tools build their parser with :func:`converter_parser`
/ :func:`backbone_parser` and parse before torch and the converters are imported, so
``--help`` and an argument error answer at once.
"""
import argparse
from typing import TYPE_CHECKING, Callable, Dict

if TYPE_CHECKING:
    import torch


def converter_parser(description: str,
                     target_eps_help: str = 'ours') -> argparse.ArgumentParser:
    """The arguments every converter tool takes: ``SRC DST [--target-bn-eps E]
    [--verbose]``; a tool adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='source checkpoint (a state dict, or a dict with '
                        '"state_dict" or "model")')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    parser.add_argument('--target-bn-eps', type=float, default=None,
                        help='BN eps of the model that will load the weights (the '
                        "norm_cfg eps; default: our configs' 0.001, "
                        f'{target_eps_help})')
    parser.add_argument('--verbose', action='store_true',
                        help='print every tensor: source key -> our key')
    return parser


def backbone_parser(description: str) -> argparse.ArgumentParser:
    """The backbone/classifier converter tools' arguments: ``SRC DST [--arch ...]
    [--no-head]`` and the common ones (:func:`converter_parser`)."""
    parser = converter_parser(description)
    parser.add_argument('--arch', metavar='ARCH',
                        help='source arch (an unknown one is refused with the list); '
                        'default: inferred from the keys and shapes (the width and '
                        'the reduced tail are inferred either way)')
    parser.add_argument('--no-head', action='store_true',
                        help='convert the backbone only, even if there is a classifier')
    return parser


def convert_and_save(args: argparse.Namespace, convert: Callable,
                     summary: Callable, **kwargs) -> None:
    """Load ``args.src`` (:func:`~mobilenet_tasks.utils.weights.load_weights`), run
    ``convert(state_dict, target_eps=..., return_info=True, **kwargs)``, save
    ``{'state_dict': ..., 'meta': ...}`` to ``args.dst`` and print what was converted:
    the source, the ``(part, text)`` lines ``summary(converted, info)`` gives, the
    config, notes and (``--verbose``) every key.

    Raises:
        SystemExit: ``error: <why>`` if the file cannot be read or converted.
    """
    import torch

    from mobilenet_tasks.utils.weights import load_weights

    from .layout import TARGET_EPS
    eps = TARGET_EPS if args.target_bn_eps is None else args.target_bn_eps
    try:
        state_dict, _ = load_weights(args.src)
        converted, info = convert(state_dict, target_eps=eps, return_info=True,
                                  **kwargs)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f'error: {e}') from e
    torch.save({'state_dict': converted, 'meta': info.meta()}, args.dst)

    lines = list(summary(converted, info))
    if info.config:
        lines.append(('config', info.config))
    lines += [('note', note) for note in info.notes]
    width = max(len(part) for part, _ in lines) + 1
    print(f'{args.src}: {getattr(info, "source", "torchvision")} {info.arch}')
    for part, text in lines:
        print(f'  {part + ":":<{width}} {text}')
    if args.verbose:
        for dst, src in info.key_map.items():
            print(f'    {src} -> {dst}  {tuple(converted[dst].shape)}')
    print(f'saved {len(converted)} tensors to {args.dst}')


def count_tensors(converted: Dict[str, 'torch.Tensor'], part: str) -> int:
    """How many converted tensors belong to ``part`` (``'backbone'``, ...)."""
    return sum(k.startswith(part + '.') for k in converted)


def convert_backbone_and_save(args: argparse.Namespace, convert: Callable) -> None:
    """The backbone/classifier converter tools' conversion (:func:`convert_and_save`)
    of ``args`` parsed with :func:`backbone_parser`: ``--arch`` and ``--no-head``
    passed on, the backbone's and the head's configs printed."""
    from .info import format_cfg

    def summary(converted, info):
        num_backbone = count_tensors(converted, 'backbone')
        yield 'backbone', f'{num_backbone} tensors -> {format_cfg(info.backbone.cfg)}'
        yield 'head', (f'{len(converted) - num_backbone} tensors -> '
                       f'{format_cfg(info.head)}' if info.head else 'none converted')

    convert_and_save(args, convert, summary, arch=args.arch,
                     with_head=not args.no_head)


__all__ = ['converter_parser', 'backbone_parser', 'convert_and_save', 'count_tensors',
           'convert_backbone_and_save']
