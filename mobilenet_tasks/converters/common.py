"""What the checkpoint converters share: the positional layout of a MobileNet, the
arch matching, BN eps folding, and the command-line driver of the converter tools.

Every reference implementation (torchvision, timm, mmpretrain) names its modules its
own way, but all of them are the same sequence: a stem conv + BN, N inverted-residual
blocks (an optional 1x1 expansion conv + BN, a depthwise conv + BN, an optional
squeeze-and-excitation with biased 1x1 convs, a 1x1 projection conv + BN), and, in most
archs, a final 1x1 conv + BN. A converter only reads its library's names into a
:class:`Layout` that points at the source keys; :func:`convert_layout` writes our keys
(``layers.0`` the stem, ``layers.1..N`` the blocks, ``layers.N+1`` the final conv) and
:func:`match_backbone` finds which of our backbones has exactly those shapes.

A state dict stores no strides, activations or dilations: the match is by key and shape,
and those come from our arch table, which follows the paper (and torchvision / timm).
"""
import argparse
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

#: BN eps of our backbones (``BaseMobileNet``'s default ``norm_cfg``).
TARGET_EPS = 1e-3
_BN_TENSORS = ('weight', 'bias', 'running_mean', 'running_var')

# (backbone type, arch, widen_factor, reduced_tail) -> the classification config that
# builds that backbone, and the head it builds.
CLASSIFICATION_CONFIGS = {
    ('MobileNetV3', 'large', 1.0, False): (
        'configs/classification/mobilenet-v3-large_8xb128_in1k.py',
        dict(type='StackedLinearClsHead', in_channels=960, mid_channels=[1280],
             num_classes=1000)),
    ('MobileNetV3', 'large', 0.75, False): (
        'configs/classification/mobilenet-v3-large-075_8xb128_in1k.py',
        dict(type='StackedLinearClsHead', in_channels=720, mid_channels=[1280],
             num_classes=1000)),
    ('MobileNetV3', 'small', 1.0, False): (
        'configs/classification/mobilenet-v3-small_8xb128_in1k.py',
        dict(type='StackedLinearClsHead', in_channels=576, mid_channels=[1024],
             num_classes=1000)),
    ('MobileNetV3', 'small', 0.75, False): (
        'configs/classification/mobilenet-v3-small-075_8xb128_in1k.py',
        dict(type='StackedLinearClsHead', in_channels=432, mid_channels=[1024],
             num_classes=1000)),
    ('MobileNetV2', None, 1.0, False): (
        'configs/classification/mobilenet-v2_8xb32_in1k.py',
        dict(type='LinearClsHead', in_channels=1280, num_classes=1000)),
    ('MobileNetV2', None, 0.35, False): (
        'configs/classification/mobilenet-v2-035_8xb32_in1k.py',
        dict(type='LinearClsHead', in_channels=1280, num_classes=1000)),
    ('MnasNet', None, 1.0, False): (
        'configs/classification/mnasnet-a1_8xb32_in1k.py',
        dict(type='LinearClsHead', in_channels=1280, num_classes=1000)),
}


# -- the layout -------------------------------------------------------------------------
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


class _Writer:
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
    w = _Writer(state_dict, source_eps, target_eps)
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
    w = _Writer(state_dict, 0.0, 0.0)
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


# -- matching our backbones -------------------------------------------------------------
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


# -- the result -------------------------------------------------------------------------
@dataclass
class ConversionInfo:
    """What a conversion found and did.

    Attributes:
        source (str): ``'torchvision'``, ``'timm'`` or ``'mmpretrain'``.
        arch (str): The source arch, as ``--arch`` takes it.
        backbone (Candidate): Our backbone the state dict loads into.
        head (dict, optional): The mmpretrain head the ``head.*`` tensors load into;
            None if no head was converted.
        key_map (dict): Our key (with ``backbone.`` / ``head.``) -> source key.
        notes (list[str]): Anything the user should know.
    """
    source: str
    arch: str
    backbone: Candidate
    head: Optional[dict] = None
    key_map: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def _config_entry(self) -> Tuple[Optional[str], Optional[dict]]:
        b = self.backbone
        return CLASSIFICATION_CONFIGS.get(
            (b.type, b.get('arch'), b.get('widen_factor'), b.get('reduced_tail')),
            (None, None))

    @property
    def config(self) -> Optional[str]:
        """Our classification config that builds this backbone, if any."""
        return self._config_entry()[0]

    @property
    def config_head(self) -> Optional[dict]:
        """The head that config builds, if any."""
        return self._config_entry()[1]

    def meta(self) -> Dict[str, Union[str, int]]:
        """The checkpoint's ``meta``: plain str and int values only."""
        return dict(
            converted_from=self.source,
            source_arch=self.arch,
            backbone=format_cfg(self.backbone.cfg),
            head=format_cfg(self.head) if self.head else 'none',
            config=self.config or '',
            num_tensors=len(self.key_map),
            notes=' '.join(self.notes))


def format_cfg(cfg: dict) -> str:
    """``dict(type='X', a=1)``, as a config file writes it."""
    return 'dict(' + ', '.join(f'{k}={v!r}' for k, v in cfg.items()) + ')'


def finish(info: ConversionInfo, backbone: StateDict, head: StateDict,
           head_cfg: Optional[dict], source_eps: float, target_eps: float
           ) -> StateDict:
    """Prefix ``backbone.`` / ``head.``, record the head and the notes in ``info``, and
    check the head fits the backbone's output channels."""
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    out.update({f'head.{k}': v for k, v in head.items()})
    info.key_map = {f'backbone.{k}': v for k, v in info.key_map.items()}
    info.head = head_cfg
    if head_cfg is not None:
        channels = output_channels(backbone)
        if head_cfg['in_channels'] != channels:
            raise ValueError(f'the classifier takes {head_cfg["in_channels"]} channels '
                             f'but the backbone gives {channels}')
        if info.config_head is not None and head_cfg != info.config_head:
            info.notes.append(
                f'The head differs from the one of {info.config} '
                f'({format_cfg(info.config_head)}): override model.head to load it.')
    elif info.config:
        info.notes.append('No head converted: the backbone loads strictly, the '
                          'classifier with strict=False.')
    if source_eps != target_eps:
        info.notes.append(f'The source BN eps {source_eps:g} is folded into the BN '
                          f'weights for our eps {target_eps:g} (exact in eval mode).')
    return out


def output_channels(backbone: StateDict) -> int:
    """Channels of the last layer of our backbone state dict (the final conv's, or the
    last block's where there is none)."""
    last = max(int(k.split('.')[1]) for k in backbone)
    for key in (f'layers.{last}.bn.running_mean',
                f'layers.{last}.project_conv.bn.running_mean'):
        if key in backbone:
            return backbone[key].shape[0]
    raise ValueError(f'layer {last} of the backbone is neither a conv nor a block')


# -- the command line -------------------------------------------------------------------
def load_source_state_dict(path: str) -> StateDict:
    """Read a checkpoint file: a plain state dict, or a dict holding one under
    ``state_dict`` or ``model``; a DataParallel ``module.`` prefix is removed.

    Loaded with ``weights_only=True`` (mmengine's checkpoint classes are allow-listed
    by ``import mobilenet_tasks``): a file that pickles code is refused."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling error)
        raise SystemExit(f'cannot load {path} with weights_only=True ({e}); '
                         're-save it as a plain state dict') from e
    if isinstance(ckpt, dict):
        for key in ('state_dict', 'model'):
            if isinstance(ckpt.get(key), dict):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise SystemExit(f'{path} holds no state dict of tensors')
    if ckpt and all(k.startswith('module.') for k in ckpt):
        ckpt = {k[len('module.'):]: v for k, v in ckpt.items()}
    return ckpt


def converter_parser(description: str,
                     target_eps_help: str = 'ours') -> argparse.ArgumentParser:
    """The arguments every converter tool takes: ``SRC DST [--target-bn-eps E]
    [--verbose]``; a tool adds its own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='source checkpoint (a state dict, or a dict with '
                        '"state_dict" or "model")')
    parser.add_argument('dst', help='where to save the converted checkpoint')
    parser.add_argument('--target-bn-eps', type=float, default=TARGET_EPS,
                        help='BN eps of the model that will load the weights (the '
                        f'norm_cfg eps; default %(default)s, {target_eps_help})')
    parser.add_argument('--verbose', action='store_true',
                        help='print every tensor: source key -> our key')
    return parser


def convert_and_save(args: argparse.Namespace, convert: Callable,
                     summary: Callable, **kwargs) -> None:
    """Load ``args.src``, run ``convert(state_dict, target_eps=..., return_info=True,
    **kwargs)``, save ``{'state_dict': ..., 'meta': ...}`` to ``args.dst`` and print
    what was converted: the source, the ``(part, text)`` lines ``summary(converted,
    info)`` gives, the config, notes and (``--verbose``) every key."""
    state_dict = load_source_state_dict(args.src)
    try:
        converted, info = convert(state_dict, target_eps=args.target_bn_eps,
                                  return_info=True, **kwargs)
    except ValueError as e:
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


def count_tensors(converted: Dict[str, torch.Tensor], part: str) -> int:
    """How many converted tensors belong to ``part`` (``'backbone'``, ...)."""
    return sum(k.startswith(part + '.') for k in converted)


def run_cli(description: str, convert: Callable, archs: Sequence[str],
            argv: Optional[Sequence[str]] = None) -> None:
    """The backbone/classifier converter tools' ``main``: ``SRC DST [--arch ...]
    [--no-head]`` and the common arguments (:func:`converter_parser`)."""
    parser = converter_parser(description)
    parser.add_argument('--arch', metavar='ARCH',
                        help=f'source arch, one of {", ".join(archs)}; default: '
                        'inferred from the keys and shapes (the width and the reduced '
                        'tail are inferred either way)')
    parser.add_argument('--no-head', action='store_true',
                        help='convert the backbone only, even if there is a classifier')
    args = parser.parse_args(argv)

    def summary(converted, info):
        num_backbone = count_tensors(converted, 'backbone')
        yield 'backbone', f'{num_backbone} tensors -> {format_cfg(info.backbone.cfg)}'
        yield 'head', (f'{len(converted) - num_backbone} tensors -> '
                       f'{format_cfg(info.head)}' if info.head else 'none converted')

    convert_and_save(args, convert, summary, arch=args.arch,
                     with_head=not args.no_head)


__all__ = [
    'TARGET_EPS', 'ConvBN', 'SE', 'Block', 'Layout', 'Candidate', 'ConversionInfo',
    'child_indices', 'check_contiguous', 'units_from_sequential', 'block_from_units',
    'fold_bn_eps', 'convert_layout', 'copy_linears', 'check_all_used', 'candidates',
    'match_backbone', 'finish', 'format_cfg', 'output_channels',
    'load_source_state_dict', 'converter_parser', 'convert_and_save',
    'count_tensors', 'run_cli'
]
