"""The positional layout of a MobileNet, and writing it as our state dict.

Every reference implementation (torchvision, timm, mmpretrain) names its modules its
own way, but all of them are the same sequence: a stem conv + BN, N inverted-residual
blocks (an optional 1x1 expansion conv + BN, a depthwise conv + BN, an optional
squeeze-and-excitation with biased 1x1 convs, a 1x1 projection conv + BN), and, in most
archs, a final 1x1 conv + BN. A converter only reads its library's names into a
:class:`Layout` that points at the source keys; :func:`convert_layout` writes our keys
(``layers.0`` the stem, ``layers.1..N`` the blocks, ``layers.N+1`` the final conv),
folding the BN eps difference into the BN weights (:func:`fold_bn_eps`), and
:func:`~mobilenet_tasks.converters.matching.match_backbone` finds which of our
backbones has exactly those shapes.

Everything here raises ValueError on a state dict it cannot read.
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

#: BN eps of our backbones (``BaseMobileNet``'s default ``norm_cfg``).
TARGET_EPS = 1e-3
_BN_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')


@dataclass(frozen=True)
class ConvBN:
    """A bias-free conv followed by a BN, by their source names.

    Args:
        conv (str): Key of the conv weight, e.g. ``'features.0.0.weight'``.
        bn (str): Prefix of the BN, e.g. ``'features.0.1'``.
    """
    conv: str
    bn: str


@dataclass(frozen=True)
class SE:
    """Squeeze-and-excitation: two 1x1 convs with bias, by their source prefixes.

    Args:
        reduce (str): Prefix of the squeeze conv (``<reduce>.weight`` and
            ``<reduce>.bias``).
        expand (str): Prefix of the excitation conv.
    """
    reduce: str
    expand: str


@dataclass(frozen=True)
class Block:
    """One inverted-residual (or depthwise-separable) block, by its source names."""
    depthwise: ConvBN
    project: ConvBN
    expand: Optional[ConvBN] = None
    se: Optional[SE] = None


@dataclass(frozen=True)
class Layout:
    """A whole backbone, by its source names: stem, blocks in order, final conv."""
    stem: ConvBN
    blocks: Tuple[Block, ...]
    final: Optional[ConvBN]


def child_indices(state_dict: StateDict, prefix: str) -> List[int]:
    """The sorted integer children of ``prefix``: ``[0, 1, 2]`` for ``features.0.*`` to
    ``features.2.*`` with ``prefix='features'`` (or ``'layer'`` for ``layer0.*``, with
    no dot)."""
    pattern = re.compile(re.escape(prefix) + r'(\d+)\.')
    return sorted({int(m.group(1)) for m in map(pattern.match, state_dict) if m})


def check_contiguous(indices: Sequence[int], what: str) -> None:
    """Raise ValueError unless ``indices`` are ``0..n-1`` (a complete module list)."""
    if list(indices) != list(range(len(indices))):
        raise ValueError(f'{what} are numbered {list(indices)}, not '
                         f'0..{len(indices) - 1}: the state dict is incomplete or is '
                         'not a MobileNet')


def units_from_sequential(state_dict: StateDict, prefix: str) -> List[Union[ConvBN, SE]]:
    """Read an ``nn.Sequential`` of conv+BN pairs and SE modules, in order.

    Understands torchvision's layouts: ``<i>.0.weight`` + ``<i>.1.*`` (a
    Conv2dNormActivation), ``<i>.weight`` + ``<i+1>.*`` (a bare conv followed by a bare
    BN, MobileNetV2's projection) and ``<i>.fc1`` / ``<i>.fc2`` (SqueezeExcitation).

    Args:
        state_dict (dict): The source state dict.
        prefix (str): The Sequential, e.g. ``'features.4.block'``.

    Returns:
        list: :class:`ConvBN` and :class:`SE` in network order.
    """
    children = child_indices(state_dict, prefix + '.')
    units, skip = [], set()
    for i in children:
        if i in skip:
            continue
        p = f'{prefix}.{i}'
        if f'{p}.0.weight' in state_dict and f'{p}.1.running_mean' in state_dict:
            units.append(ConvBN(f'{p}.0.weight', f'{p}.1'))
        elif f'{p}.fc1.weight' in state_dict:
            units.append(SE(f'{p}.fc1', f'{p}.fc2'))
        elif (f'{p}.weight' in state_dict and state_dict[f'{p}.weight'].dim() == 4
              and f'{prefix}.{i + 1}.running_mean' in state_dict):
            units.append(ConvBN(f'{p}.weight', f'{prefix}.{i + 1}'))
            skip.add(i + 1)
        else:
            keys = [k for k in state_dict if k.startswith(p + '.')]
            raise ValueError(f'{p} is neither a conv + BN nor a squeeze-and-excitation '
                             f'(keys {keys}): not a MobileNet block')
    return units


def block_from_units(units: Sequence[Union[ConvBN, SE]], state_dict: StateDict,
                     where: str) -> Block:
    """Assign a block's conv+BN pairs by position: ``[expand,] depthwise, project``.

    Args:
        units: The block's modules in order (:func:`units_from_sequential`).
        state_dict (dict): The source state dict (to check the depthwise conv).
        where (str): The block's source name, for errors.

    Returns:
        Block: The block.
    """
    convs = [u for u in units if isinstance(u, ConvBN)]
    ses = [u for u in units if isinstance(u, SE)]
    if len(convs) not in (2, 3) or len(ses) > 1:
        raise ValueError(f'{where} has {len(convs)} conv + BN pairs and {len(ses)} SE '
                         'modules; an inverted residual has 2 or 3 and at most 1')
    expand = convs[0] if len(convs) == 3 else None
    depthwise, project = convs[-2], convs[-1]
    if state_dict[depthwise.conv].shape[1] != 1:
        raise ValueError(f'{where}: {depthwise.conv} should be the depthwise conv, but '
                         f'its shape is {tuple(state_dict[depthwise.conv].shape)}')
    return Block(depthwise=depthwise, project=project, expand=expand,
                 se=ses[0] if ses else None)


# -- converting -------------------------------------------------------------------------
def fold_bn_eps(weight: Tensor, running_var: Tensor, source_eps: float,
                target_eps: float) -> Tensor:
    """The BN weight that makes a BN with ``target_eps`` compute what the source BN with
    ``source_eps`` computes:
    ``weight * sqrt(var + target_eps) / sqrt(var + source_eps)``.

    Exact in eval mode for every ``running_var >= 0``; the mean, variance and bias are
    unchanged.
    """
    if source_eps == target_eps:
        return weight
    var = running_var.double()
    scale = torch.sqrt(var + target_eps) / torch.sqrt(var + source_eps)
    return (weight.double() * scale).to(weight.dtype)


class Writer:
    """Copies source tensors to our keys, remembering which source key each came from."""

    def __init__(self, state_dict: StateDict, source_eps: float, target_eps: float):
        self.src = state_dict
        self.source_eps = source_eps
        self.target_eps = target_eps
        self.out: StateDict = {}
        self.key_map: Dict[str, str] = {}  # our key -> source key

    def get(self, key: str) -> Tensor:
        if key not in self.src:
            raise ValueError(f'the state dict has no {key!r}')
        return self.src[key]

    def put(self, dst: str, src: str, value: Optional[Tensor] = None) -> None:
        self.out[dst] = self.get(src) if value is None else value
        self.key_map[dst] = src

    def conv_bn(self, dst: str, unit: ConvBN) -> None:
        self.put(f'{dst}.conv.weight', unit.conv)
        for name in _BN_TENSORS:
            self.put(f'{dst}.bn.{name}', f'{unit.bn}.{name}')
        weight = fold_bn_eps(self.out[f'{dst}.bn.weight'],
                             self.out[f'{dst}.bn.running_var'], self.source_eps,
                             self.target_eps)
        self.out[f'{dst}.bn.weight'] = weight
        tracked = f'{unit.bn}.num_batches_tracked'
        if tracked in self.src:
            self.put(f'{dst}.bn.num_batches_tracked', tracked)
        else:  # older checkpoints have none; ours has it
            self.out[f'{dst}.bn.num_batches_tracked'] = torch.tensor(0)
            self.key_map[f'{dst}.bn.num_batches_tracked'] = '(zero)'

    def conv_bias(self, dst: str, src: str) -> None:
        self.put(f'{dst}.weight', f'{src}.weight')
        self.put(f'{dst}.bias', f'{src}.bias')

    def linear(self, dst: str, src: str) -> None:
        """A Linear from a Linear or a 1x1 conv with bias (timm's ``conv_head``)."""
        weight = self.get(f'{src}.weight')
        if weight.dim() == 4:
            if weight.shape[2:] != (1, 1):
                raise ValueError(f'{src} is a {tuple(weight.shape[2:])} conv, not 1x1')
            weight = weight.flatten(1)
        self.put(f'{dst}.weight', f'{src}.weight', weight)
        self.put(f'{dst}.bias', f'{src}.bias')


def convert_layout(state_dict: StateDict, layout: Layout, source_eps: float,
                   target_eps: float = TARGET_EPS) -> Tuple[StateDict, Dict[str, str]]:
    """Write a :class:`Layout` as our backbone's state dict (no ``backbone.`` prefix).

    Args:
        state_dict (dict): The source state dict.
        layout (Layout): Where each module is in it.
        source_eps (float): BN eps of the source model.
        target_eps (float): BN eps of ours (``norm_cfg['eps']``, 1e-3 by default); the
            difference is folded into the BN weights (:func:`fold_bn_eps`).

    Returns:
        tuple: Our state dict, and for each of our keys the source key it came from.
    """
    w = Writer(state_dict, source_eps, target_eps)
    w.conv_bn('layers.0', layout.stem)
    for i, block in enumerate(layout.blocks, start=1):
        if block.expand is not None:
            w.conv_bn(f'layers.{i}.expand_conv', block.expand)
        w.conv_bn(f'layers.{i}.depthwise_conv', block.depthwise)
        if block.se is not None:
            w.conv_bias(f'layers.{i}.se.conv1', block.se.reduce)
            w.conv_bias(f'layers.{i}.se.conv2', block.se.expand)
        w.conv_bn(f'layers.{i}.project_conv', block.project)
    if layout.final is not None:
        w.conv_bn(f'layers.{len(layout.blocks) + 1}', layout.final)
    return w.out, w.key_map


def copy_linears(state_dict: StateDict, pairs: Sequence[Tuple[str, str]]
                 ) -> Tuple[StateDict, Dict[str, str]]:
    """Copy Linear layers (or 1x1 convs with bias, flattened) ``(dst, src)``."""
    w = Writer(state_dict, 0.0, 0.0)
    for dst, src in pairs:
        w.linear(dst, src)
    return w.out, w.key_map


def check_all_used(state_dict: StateDict, used: Sequence[str], source: str) -> None:
    """Raise ValueError if a source tensor was not converted: nothing is dropped
    silently."""
    left = [k for k in state_dict if k not in set(used)]
    if left:
        shown = ', '.join(left[:8]) + (f' and {len(left) - 8} more' if len(left) > 8
                                       else '')
        raise ValueError(f'{len(left)} tensors of the {source} state dict have no place '
                         f'in ours: {shown}. Is it a {source} MobileNet state dict?')


__all__ = [
    'TARGET_EPS', 'StateDict', 'ConvBN', 'SE', 'Block', 'Layout', 'Writer',
    'child_indices', 'check_contiguous', 'units_from_sequential', 'block_from_units',
    'fold_bn_eps', 'convert_layout', 'copy_linears', 'check_all_used'
]
