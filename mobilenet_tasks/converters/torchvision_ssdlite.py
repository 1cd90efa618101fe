"""torchvision ``ssdlite320_mobilenet_v3_large`` state dicts to our SSDLite (mmdet).

torchvision's SSDLite and ours are the same network under other names:

- ``backbone.features.0`` (torchvision's ``features[:c4]`` and the expansion layer
  ``features[c4].block[0]``, C4) and ``backbone.features.1`` (the rest of block ``c4``
  and ``features[c4 + 1:]``, ending in the final 1x1 conv, C5) are a torchvision
  MobileNetV3 split in two: put back together, the torchvision MobileNetV3 converter
  maps them to ``backbone.layers.*`` (our ``expansion_indices=(c4, )`` and
  ``out_indices=(N + 1, )`` tap C4 and C5);
- ``backbone.extra.i`` (1x1 + BN + ReLU6, dw 3x3 stride 2 + BN + ReLU6, 1x1 + BN +
  ReLU6) is ``neck.extra_layers.i`` of mmdet's ``SSDNeck`` with ``use_depthwise``
  (a 1x1 ``ConvModule``, then a ``DepthwiseSeparableConvModule``);
- ``head.classification_head.module_list.l`` and ``head.regression_head.module_list.l``
  (dw 3x3 + BN + ReLU6, then a 1x1 conv with bias) are ``bbox_head.cls_convs.l`` and
  ``bbox_head.reg_convs.l`` of mmdet's ``SSDHead`` with ``use_depthwise`` (a dw
  ``ConvModule``, then a 1x1 ``nn.Conv2d``).

The class conv is the one place where tensors change: torchvision predicts 91 logits
per anchor (0 = background, 1..90 = COCO category ids, 10 of them unused "N/A"), mmdet
80 + background, background last, classes in the order of the COCO 2017 category ids
(``mmdet.datasets.CocoDataset``). Both lay the channels out anchor-major
(``anchor * num_classes + class``: torchvision's ``SSDScoringHead`` views ``(N, A, K, H,
W)``, mmdet's ``_predict_by_feat_single`` reshapes ``(H, W, A * K)`` to ``(H * W * A,
K)``), so output channel ``a * 81 + j`` of ours is channel
``a * 91 + COCO_CATEGORY_IDS[j]`` of torchvision's (``a * 91 + 0`` for ``j = 80``, the
background). Softmax over our 81 logits equals torchvision's over 91 up to the dropped
N/A logits, which a trained model drives to very negative values (COCO has no N/A
boxes).

The box deltas need nothing: torchvision's ``BoxCoder(weights=(10, 10, 5, 5))`` divides
(dx, dy, dw, dh) by the weights, mmdet's ``DeltaXYWHBBoxCoder`` with ``target_stds=(0.1,
0.1, 0.2, 0.2)`` multiplies by the stds, in the same order, with the same
``log(1000 / 16)`` clamp of dw, dh. The default boxes are our ``SSDLiteAnchorGenerator``
with ``reduce_lowest_level=False`` (6 per location on every level, torchvision's
order).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .info import format_cfg
from .layout import (TARGET_EPS, ConvBN, Writer, check_all_used, check_contiguous,
                     child_indices)
from .matching import Candidate
from .torchvision import TORCHVISION_EPS, convert_torchvision

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

#: torchvision's label (= COCO category id) of each of mmdet's 80 COCO classes, in
#: mmdet's order (``CocoDataset.METAINFO['classes']``): 1..90 without the 10 ids COCO
#: 2017 does not use.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91) if i not in COCO_UNUSED_IDS)

#: The config that builds torchvision's ssdlite320_mobilenet_v3_large.
TORCHVISION_SSDLITE_CONFIG = 'configs/ssdlite_v3_large_reduced_torchvision_coco.py'
#: What that config builds: (backbone arch, reduced tail, extra channels, classes).
_CONFIG_MODEL = ('large', True, (512, 256, 256, 128), 80)
#: Anchors per location on every level: ratios 1 (two scales), 2, 1/2, 3, 1/3.
NUM_ANCHORS = 6

_SOURCE_PREFIXES = ('backbone.features.', 'backbone.extra.',
                    'head.classification_head.module_list.',
                    'head.regression_head.module_list.')


@dataclass
class SSDLiteConversionInfo:
    """What :func:`convert_torchvision_ssdlite` found and did.

    Attributes:
        backbone (Candidate): Our backbone (arch, width, reduced tail) of the weights.
        c4_block (int): The block whose expansion layer is C4 (``expansion_indices``).
        num_blocks (int): Number of blocks (C5 is layer ``num_blocks + 1``).
        extra_channels (tuple): Output channels of the extra layers (the neck's
            ``extra_channels``).
        class_ids (tuple): torchvision's label of each of our classes, in our order.
        key_map (dict): Our key -> source key.
        notes (list[str]): Anything the user should know.
    """
    backbone: Candidate
    c4_block: int
    num_blocks: int
    extra_channels: Tuple[int, ...]
    class_ids: Tuple[int, ...]
    key_map: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    source = 'torchvision'

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)

    @property
    def arch(self) -> str:
        """The source model, named as torchvision's builder (which exists for the large
        backbone only)."""
        return f'ssdlite320_mobilenet_v3_{self.backbone.get("arch")}'

    @property
    def backbone_cfg(self) -> dict:
        """``model.backbone`` of the detector the weights load into."""
        return dict(self.backbone.cfg, expansion_indices=(self.c4_block, ),
                    out_indices=(self.num_blocks + 1, ))

    @property
    def config(self) -> Optional[str]:
        """Our config that builds this model exactly, if any."""
        b = self.backbone
        if (b.get('arch'), b.get('reduced_tail'), self.extra_channels,
                self.num_classes) == _CONFIG_MODEL and self.c4_block == 13:
            return TORCHVISION_SSDLITE_CONFIG
        return None

    def meta(self) -> Dict[str, object]:
        """The checkpoint's ``meta``: plain str and int values only."""
        return dict(
            converted_from=self.source,
            source_arch=self.arch,
            backbone=format_cfg(self.backbone_cfg),
            extra_channels=str(self.extra_channels),
            num_classes=self.num_classes,
            class_ids=' '.join(map(str, self.class_ids)),
            config=self.config or '',
            num_tensors=len(self.key_map),
            notes=' '.join(self.notes))


def _check_is_ssdlite(state_dict: StateDict) -> None:
    if all(k.startswith(_SOURCE_PREFIXES) for k in state_dict) and any(
            k.startswith('backbone.features.0.') for k in state_dict):
        return
    tops = sorted({k.split('.')[0] for k in state_dict})
    others = [k for k in state_dict if not k.startswith(_SOURCE_PREFIXES)]
    hint = ''
    if any(k.startswith('features.') for k in state_dict):
        hint = (' It looks like a torchvision MobileNet classifier: convert it with '
                'tools/model_converters/torchvision_mobilenet.py.')
    raise ValueError(
        'not a torchvision SSDLite state dict: expected only keys under '
        f'{", ".join(p.rstrip(".") for p in _SOURCE_PREFIXES)} (as '
        'ssdlite320_mobilenet_v3_large().state_dict() has), got keys under '
        f'{tops}' + (f', e.g. {others[:3]}' if others else '') + '.' + hint)


def split_backbone(state_dict: StateDict) -> Tuple[StateDict, Dict[str, str], int]:
    """Rebuild the torchvision ``MobileNetV3.features`` keys from SSDLite's split.

    ``backbone.features.0.{j}`` (j < c4) is ``features.{j}``,
    ``backbone.features.0.{c4}`` is ``features.{c4}.block.0`` (the C4 expansion),
    ``backbone.features.1.0.{m}`` is ``features.{c4}.block.{m}`` (nn.Sequential slicing
    keeps the indices) and ``backbone.features.1.{n}`` (n >= 1) is
    ``features.{c4 + n}``.

    Returns:
        tuple: The MobileNetV3 state dict, its key -> SSDLite source key, and ``c4``.
    """
    parts = child_indices(state_dict, 'backbone.features.')
    if parts != [0, 1]:
        raise ValueError(f'backbone.features has parts {parts}; torchvision\'s SSDLite '
                         'feature extractor has 2 (up to the C4 expansion, the rest)')
    first = child_indices(state_dict, 'backbone.features.0.')
    check_contiguous(first, 'the children of backbone.features.0')
    c4 = first[-1]
    if f'backbone.features.0.{c4}.0.weight' not in state_dict or any(
            k.startswith(f'backbone.features.0.{c4}.block.') for k in state_dict):
        raise ValueError(f'backbone.features.0.{c4} should be the expansion conv + BN '
                         'of the C4 block (torchvision\'s SSDLite taps C4 there), but '
                         'it is not a single conv + BN')
    rest = child_indices(state_dict, 'backbone.features.1.')
    check_contiguous(rest, 'the children of backbone.features.1')
    if not rest or 'backbone.features.1.0.1.0.weight' not in state_dict:
        raise ValueError('backbone.features.1.0 should be the rest of the C4 block '
                         '(depthwise conv first, at index 1), but has no '
                         'backbone.features.1.0.1.0.weight')
    out, back = {}, {}

    def put(src_key: str, key: str) -> None:
        out[key] = state_dict[src_key]
        back[key] = src_key

    for key in state_dict:
        if not key.startswith('backbone.features.'):
            continue
        part, index, tail = key[len('backbone.features.'):].split('.', 2)
        index = int(index)
        if part == '0':
            put(key, f'features.{index}.{tail}' if index < c4 else
                f'features.{c4}.block.0.{tail}')
        elif index == 0:
            put(key, f'features.{c4}.block.{tail}')
        else:
            put(key, f'features.{c4 + index}.{tail}')
    return out, back, c4


def _conv_bn(prefix: str) -> ConvBN:
    """torchvision's ``Conv2dNormActivation`` at ``prefix``: ``.0`` conv, ``.1`` BN."""
    return ConvBN(f'{prefix}.0.weight', f'{prefix}.1')


def _num_levels(state_dict: StateDict, prefix: str) -> int:
    levels = child_indices(state_dict, prefix)
    check_contiguous(levels, prefix.rstrip('.'))
    return len(levels)


def _select_classes(tensor: Tensor, num_anchors: int, num_source: int,
                    index: Tensor) -> Tensor:
    """Channels ``a * num_source + index[j]`` -> ``a * len(index) + j``: both
    anchor-major."""
    per_anchor = tensor.reshape(num_anchors, num_source, *tensor.shape[1:])
    return per_anchor[:, index].reshape(num_anchors * len(index), *tensor.shape[1:])


def convert_torchvision_ssdlite(state_dict: StateDict, *,
                                class_ids: Optional[Sequence[int]] = None,
                                target_eps: float = TARGET_EPS,
                                return_info: bool = False):
    """Convert a torchvision SSDLite state dict to our ``mobilenet_tasks.SSDLite``.

    Args:
        state_dict (dict): ``ssdlite320_mobilenet_v3_large().state_dict()`` (the COCO
            checkpoint ``ssdlite320_mobilenet_v3_large_coco-a79551df.pth``).
        class_ids (Sequence[int], optional): torchvision's label of each of our
            classes, in our order; label 0, torchvision's background, becomes our
            background (the last class channel). Default: the 80 COCO 2017 category
            ids (:data:`COCO_CATEGORY_IDS`), which needs torchvision's 91 COCO labels;
            the other labels (COCO's unused "N/A" ids) are dropped.
        target_eps (float): BN eps of the model that will load the result (torchvision's
            SSDLite uses 1e-3, as our configs; a difference is folded into the BN
            weights).
        return_info (bool): Also return a :class:`SSDLiteConversionInfo`.

    Returns:
        dict: ``backbone.*``, ``neck.*`` and ``bbox_head.*`` tensors that load strictly
        into the model of ``configs/ssdlite_v3_large_reduced_torchvision_coco.py``
        (``info.config``; ``info.backbone_cfg`` and ``info.extra_channels`` describe
        the model for other variants). With ``return_info``, ``(state_dict, info)``.

    Raises:
        ValueError: If it is not a torchvision SSDLite state dict with a MobileNetV3
            backbone, 6 anchors per location and (by default) the 91 COCO labels.
    """
    _check_is_ssdlite(state_dict)
    source_eps = TORCHVISION_EPS['MobileNetV3']

    # -- the backbone: the torchvision MobileNetV3 converter ---------------------------
    features, back, c4 = split_backbone(state_dict)
    if not any('.block.' in k for k in features):
        raise ValueError('the backbone is not a torchvision MobileNetV3 (its blocks '
                         'have no ".block"): only MobileNetV3 SSDLite is supported')
    try:
        mbv3, mbv3_info = convert_torchvision(features, with_head=False,
                                              target_eps=target_eps, return_info=True)
    except ValueError as e:
        raise ValueError('the SSDLite backbone (backbone.features, read as torchvision '
                         f'MobileNetV3 features.*) does not convert: {e}') from e
    if not mbv3_info.arch.startswith('mobilenet_v3'):
        raise ValueError(f'the SSDLite backbone matches {mbv3_info.arch}, not a '
                         'MobileNetV3')
    num_blocks = len(child_indices(features, 'features.')) - 2
    out = dict(mbv3)
    key_map = {k: back.get(v, v) for k, v in mbv3_info.key_map.items()}

    # -- the extra layers: mmdet's SSDNeck ---------------------------------------------
    w = Writer(state_dict, source_eps, target_eps)
    num_extra = _num_levels(state_dict, 'backbone.extra.')
    extra_channels = []
    for i in range(num_extra):
        src, dst = f'backbone.extra.{i}', f'neck.extra_layers.{i}'
        dw = w.get(f'{src}.1.0.weight')
        if dw.dim() != 4 or dw.shape[1] != 1 or dw.shape[2:] != (3, 3):
            raise ValueError(f'{src}.1 should be a 3x3 depthwise conv, but its weight '
                             f'has shape {tuple(dw.shape)}')
        w.conv_bn(f'{dst}.0', _conv_bn(f'{src}.0'))
        w.conv_bn(f'{dst}.1.depthwise_conv', _conv_bn(f'{src}.1'))
        w.conv_bn(f'{dst}.1.pointwise_conv', _conv_bn(f'{src}.2'))
        extra_channels.append(w.get(f'{src}.2.1.running_mean').shape[0])

    # -- the heads: mmdet's SSDHead (use_depthwise) ------------------------------------
    cls_prefix = 'head.classification_head.module_list.'
    reg_prefix = 'head.regression_head.module_list.'
    num_levels = _num_levels(state_dict, cls_prefix)
    num_reg_levels = _num_levels(state_dict, reg_prefix)
    if num_reg_levels != num_levels or num_levels != 2 + num_extra:
        raise ValueError(f'{num_levels} classification and {num_reg_levels} regression '
                         f'head levels for 2 backbone + {num_extra} extra feature maps')
    num_source = None
    for level in range(num_levels):
        reg = w.get(f'{reg_prefix}{level}.1.weight')
        cls = w.get(f'{cls_prefix}{level}.1.weight')
        if reg.shape[0] != 4 * NUM_ANCHORS:
            raise ValueError(
                f'{reg_prefix}{level}.1 predicts {reg.shape[0]} box deltas per '
                f'location, {reg.shape[0] / 4:g} anchors; torchvision\'s SSDLite (and '
                'our SSDLiteAnchorGenerator with reduce_lowest_level=False) has '
                f'{NUM_ANCHORS} on every level')
        if cls.shape[0] % NUM_ANCHORS:
            raise ValueError(f'{cls_prefix}{level}.1 has {cls.shape[0]} channels, not '
                             f'a multiple of {NUM_ANCHORS} anchors')
        level_classes = cls.shape[0] // NUM_ANCHORS
        if num_source not in (None, level_classes):
            raise ValueError(f'{cls_prefix}{level}.1 predicts {level_classes} classes, '
                             f'level 0 {num_source}')
        num_source = level_classes
    if class_ids is None:
        if num_source != 91:
            raise ValueError(
                f'the classification head predicts {num_source} classes per anchor '
                '(background included), torchvision\'s COCO SSDLite 91 (background + '
                'COCO category ids 1..90, the default mapping to mmdet\'s 80 COCO '
                'classes): for a model of other classes pass class_ids, torchvision\'s '
                'label of each of ours in our order')
        class_ids = COCO_CATEGORY_IDS
    class_ids = tuple(int(i) for i in class_ids)
    if not class_ids or len(set(class_ids)) != len(class_ids) or not all(
            1 <= i < num_source for i in class_ids):
        raise ValueError(f'class_ids must be distinct labels in 1..{num_source - 1} '
                         f'(0 is the background), got {class_ids}')
    index = torch.tensor(class_ids + (0, ))  # our background last
    for level in range(num_levels):
        for head_src, head_dst in ((cls_prefix, 'cls_convs'),
                                   (reg_prefix, 'reg_convs')):
            src, dst = f'{head_src}{level}', f'bbox_head.{head_dst}.{level}'
            w.conv_bn(f'{dst}.0', _conv_bn(f'{src}.0'))
            if head_dst == 'reg_convs':
                w.conv_bias(f'{dst}.1', f'{src}.1')
                continue
            for name in ('weight', 'bias'):
                w.put(f'{dst}.1.{name}', f'{src}.1.{name}',
                      _select_classes(w.get(f'{src}.1.{name}'), NUM_ANCHORS,
                                      num_source, index))
    out.update(w.out)
    key_map.update(w.key_map)
    check_all_used(state_dict, [v for v in key_map.values() if v != '(zero)'],
                   'torchvision SSDLite')

    info = SSDLiteConversionInfo(mbv3_info.backbone, c4, num_blocks,
                                 tuple(extra_channels), class_ids, key_map=key_map)
    if class_ids == COCO_CATEGORY_IDS and num_source == 91:
        info.notes.append('The 91 torchvision COCO labels are mapped to the 80 mmdet '
                          'COCO classes (background last); the 10 unused N/A labels '
                          'are dropped.')
    if info.config is None:
        info.notes.append(
            'No config here builds this exact model; start from '
            f'{TORCHVISION_SSDLITE_CONFIG} with '
            f'model.backbone={format_cfg(info.backbone_cfg)}, '
            f'model.neck.extra_channels={info.extra_channels}, '
            f'model.bbox_head.num_classes={info.num_classes}.')
    if source_eps != target_eps:
        info.notes.append(f'The source BN eps {source_eps:g} is folded into the BN '
                          f'weights for eps {target_eps:g} (exact in eval mode).')
    return (out, info) if return_info else out


__all__ = ['COCO_CATEGORY_IDS', 'COCO_UNUSED_IDS', 'TORCHVISION_SSDLITE_CONFIG',
           'SSDLiteConversionInfo', 'split_backbone', 'convert_torchvision_ssdlite']
