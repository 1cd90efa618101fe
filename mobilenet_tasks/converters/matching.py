"""Which of our backbones a converted state dict is: match by key and shape.

A state dict stores no strides, activations or dilations: the match is by key and shape,
and those come from our arch table, which follows the paper (and torchvision / timm).
Each converter lists, per source arch, the :class:`Candidate` backbones of ours it may
be (:func:`candidates`); :func:`match_backbone` builds each on the meta device and
returns the one whose state dict has exactly the converted shapes, or raises a
ValueError saying what differs and which arch, if any, does match.
"""
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .layout import StateDict


@dataclass(frozen=True)
class Candidate:
    """One of our backbones: ``type`` and its constructor arguments (hashable).

    Args:
        type (str): ``'MobileNetV3'``, ``'MobileNetV2'`` or ``'MnasNet'``.
        kwargs (tuple): ``(name, value)`` pairs, e.g. ``(('arch', 'large'),
            ('widen_factor', 1.0), ('reduced_tail', False))``.
    """
    type: str
    kwargs: Tuple[Tuple[str, object], ...]

    @property
    def cfg(self) -> dict:
        """The config dict, as a config file would write it."""
        return dict(type=f'mobilenet_tasks.{self.type}', **dict(self.kwargs))

    def describe(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in self.kwargs)
        return f'{self.type}({args})'

    def get(self, name: str, default=None):
        return dict(self.kwargs).get(name, default)


def candidates(type: str, widths: Sequence[float], reduced_tail: bool = True,
               **kwargs) -> List[Candidate]:
    """Our backbones of one arch at each of ``widths`` (each with the full and the
    reduced tail if ``reduced_tail``), in that order: put the likeliest first."""
    out = []
    for width in widths:
        for reduced in ((False, True) if reduced_tail else (False, )):
            out.append(Candidate(type, tuple(kwargs.items()) + (
                ('widen_factor', float(width)), ('reduced_tail', reduced))))
    return out


@lru_cache(maxsize=None)
def _expected(candidate: Candidate) -> Tuple[int, Tuple[Tuple[str, tuple], ...]]:
    """Number of blocks and ``(key, shape)`` of our backbone's state dict (built on the
    meta device: no memory, no init)."""
    from mobilenet_tasks.models import backbones
    cls = getattr(backbones, candidate.type)
    with torch.device('meta'):
        model = cls(**dict(candidate.kwargs))
    shapes = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    return model.num_blocks, shapes


def expected_num_blocks(candidate: Candidate) -> int:
    """Number of blocks of our backbone ``candidate``."""
    return _expected(candidate)[0]


def shape_differences(backbone: StateDict, candidate: Candidate) -> List[str]:
    """How our converted ``backbone`` state dict differs from ``candidate``'s; empty if
    it loads strictly."""
    expected = dict(_expected(candidate)[1])
    diffs = []
    for key, shape in expected.items():
        if key not in backbone:
            diffs.append(f'{key} is missing')
        elif tuple(backbone[key].shape) != shape:
            diffs.append(f'{key} has shape {tuple(backbone[key].shape)} where '
                         f'{candidate.describe()} has {shape}')
    diffs += [f'{key} is not in {candidate.describe()}' for key in backbone
              if key not in expected]
    return diffs


def match_backbone(backbone: StateDict, num_blocks: int,
                   archs: Dict[str, List[Candidate]], arch: Optional[str],
                   source: str, key_map: Optional[Dict[str, str]] = None
                   ) -> Tuple[str, Candidate]:
    """Find the arch, width and tail of ours whose state dict has exactly these shapes.

    Args:
        backbone (dict): The converted backbone state dict (our keys).
        num_blocks (int): Number of blocks read from the source.
        archs (dict): Arch name (as ``--arch`` takes it) -> our candidate backbones.
        arch (str, optional): The arch asked for; None to try every arch.
        source (str): The source library, for messages.
        key_map (dict, optional): Our key -> source key, for messages.

    Returns:
        tuple: The arch name and the matching :class:`Candidate`.

    Raises:
        ValueError: If ``arch`` is unknown, or no candidate (of ``arch``) matches; the
            message says what differs and which arch, if any, does match.
    """
    if arch is not None and arch not in archs:
        raise ValueError(f'arch must be one of {sorted(archs)}, got {arch!r}')
    key_map = key_map or {}

    def try_arch(name: str) -> Tuple[Optional[Candidate], str]:
        cands = archs[name]
        expected_blocks = expected_num_blocks(cands[0])
        if expected_blocks != num_blocks:
            return None, (f'it has {num_blocks} blocks, {cands[0].describe()} has '
                          f'{expected_blocks}')
        closest = None
        for cand in cands:
            diffs = shape_differences(backbone, cand)
            if not diffs:
                return cand, ''
            if closest is None or len(diffs) < len(closest[1]):
                closest = (cand, diffs)
        cand, diffs = closest
        first = diffs[0]
        ours = first.split(' ', 1)[0]
        if ours in key_map:
            first = f'{first} (source {key_map[ours]})'
        return None, (f'{len(diffs)} tensors differ from the closest, '
                      f'{cand.describe()}, e.g. {first}')

    if arch is not None:
        found, reason = try_arch(arch)
        if found is not None:
            return arch, found
        others = [(n, try_arch(n)[0]) for n in archs if n != arch]
        others = [(n, c) for n, c in others if c is not None]
        if others:
            name, cand = others[0]
            hint = (f'It matches arch {name!r} ({cand.describe()}): pass --arch {name} '
                    f'(arch={name!r}), or leave the arch out to infer it.')
        else:
            hint = (f'It matches none of {sorted(archs)}: check that it is a {source} '
                    'MobileNet state dict of a supported arch.')
        raise ValueError(f'The {source} state dict does not match arch {arch!r}: '
                         f'{reason}. {hint}')

    reasons = []
    for name in archs:
        found, reason = try_arch(name)
        if found is not None:
            return name, found
        reasons.append(f'{name}: {reason}')
    raise ValueError(f'The {source} state dict matches none of our backbones '
                     f'({"; ".join(reasons)}). Check that it is a {source} MobileNet '
                     'state dict of a supported arch (widths and tails are inferred).')


__all__ = ['Candidate', 'candidates', 'expected_num_blocks', 'shape_differences',
           'match_backbone']
