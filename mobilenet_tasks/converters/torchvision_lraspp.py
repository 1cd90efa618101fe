"""torchvision ``lraspp_mobilenet_v3_large`` state dicts to our mmseg LR-ASPP.

torchvision's ``LRASPP`` and the model of ``configs/lraspp_v3_large_torchvision_voc.py``
(mmseg's ``EncoderDecoder`` with our ``MobileNetV3`` and ``LRASPPHead``) are the same
network under other names:

- ``backbone.<i>.*`` is an ``IntermediateLayerGetter`` over ``mobilenet_v3_large(
  dilated=True).features``, which keeps the ``features`` indices: read as
  ``features.<i>.*``, the torchvision MobileNetV3 converter maps it to our
  ``backbone.layers.<i>.*`` (0 the stem, 1..15 the blocks, 16 the final conv).
  ``dilated=True`` changes no weight; our ``output_stride=16`` dilates the same
  layers. The getter returns ``low`` = ``features[4]`` (the first block at output
  stride 8, 40 channels) and ``high`` = ``features[16]`` (960 channels): our
  ``out_indices=(4, 16)``.
- ``classifier`` (torchvision's ``LRASPPHead``) is our ``LRASPPHead`` with
  ``global_pool=True`` and ``dropout_ratio=0``: ``cbr.0`` / ``cbr.1`` (1x1 conv, BN)
  become ``decode_head.cbr.conv`` / ``decode_head.cbr.bn``, ``scale.1`` (the gate's 1x1
  conv after the global pool) ``decode_head.scale_conv``, ``low_classifier``
  ``decode_head.low_classifier`` and ``high_classifier`` ``decode_head.conv_seg``.

No tensor changes: the classes are the same in the same order (torchvision's
``COCO_WITH_VOC_LABELS_V1`` weights predict background + the 20 Pascal VOC categories,
mmseg's ``PascalVOCDataset`` order), the backbone BN eps is 0.001 on both sides (a
different ``target_eps`` is folded into the BN weights) and the head's BN is PyTorch's
default on both sides (eps 1e-5). torchvision upsamples the logits to the input size
bilinearly with ``align_corners=False``, as mmseg's ``EncoderDecoder`` does.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .info import format_cfg, output_channels
from .layout import TARGET_EPS, ConvBN, Writer, check_all_used, child_indices
from .matching import Candidate
from .torchvision import TORCHVISION_EPS, convert_torchvision

Tensor = torch.Tensor
StateDict = Dict[str, Tensor]

#: The config that builds torchvision's lraspp_mobilenet_v3_large.
TORCHVISION_LRASPP_CONFIG = 'configs/lraspp_v3_large_torchvision_voc.py'
#: What that config's decode head has: classes and the head's inner channels.
CONFIG_NUM_CLASSES = 21
CONFIG_CHANNELS = 128
#: torchvision's low tap on MobileNetV3-Large: ``features[4]``, the last strided block
#: before output stride 16 (``_lraspp_mobilenetv3``'s ``stage_indices[-4]``).
LOW_INDEX = 4
#: BN eps of torchvision's ``LRASPPHead.cbr`` (``nn.BatchNorm2d``) and of mmcv's BN.
HEAD_EPS = 1e-5

_TOP_LEVEL = ('backbone', 'classifier')


@dataclass
class LRASPPConversionInfo:
    """What :func:`convert_torchvision_lraspp` found and did.

    Attributes:
        backbone (Candidate): Our backbone (arch, width, tail) of the weights.
        in_channels (tuple): Channels of the low and high features.
        channels (int): The head's inner channels (torchvision's ``inter_channels``).
        num_classes (int): Classes, background included.
        key_map (dict): Our key -> source key.
        notes (list[str]): Anything the user should know.
    """
    backbone: Candidate
    in_channels: Tuple[int, int]
    channels: int
    num_classes: int
    high_index: int = 16
    key_map: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    source = 'torchvision'
    arch = 'lraspp_mobilenet_v3_large'

    @property
    def backbone_cfg(self) -> dict:
        """``model.backbone`` of the segmentor the weights load into."""
        return dict(self.backbone.cfg, output_stride=16,
                    out_indices=(LOW_INDEX, self.high_index))

    @property
    def decode_head_cfg(self) -> dict:
        """``model.decode_head`` of the segmentor the weights load into."""
        return dict(type='mobilenet_tasks.LRASPPHead', in_channels=self.in_channels,
                    channels=self.channels, global_pool=True, dropout_ratio=0,
                    num_classes=self.num_classes)

    @property
    def config(self) -> Optional[str]:
        """Our config that builds this model exactly, if any."""
        if (self.channels, self.num_classes) == (CONFIG_CHANNELS, CONFIG_NUM_CLASSES):
            return TORCHVISION_LRASPP_CONFIG
        return None

    def meta(self) -> Dict[str, object]:
        """The checkpoint's ``meta``: plain str and int values only."""
        return dict(
            converted_from=self.source,
            source_arch=self.arch,
            backbone=format_cfg(self.backbone_cfg),
            decode_head=format_cfg(self.decode_head_cfg),
            num_classes=self.num_classes,
            config=self.config or '',
            num_tensors=len(self.key_map),
            notes=' '.join(self.notes))


def _check_is_lraspp(state_dict: StateDict) -> None:
    """Raise ValueError, with a hint, unless the keys are ``backbone.<i>.*`` and
    ``classifier.*``."""
    tops = sorted({k.split('.')[0] for k in state_dict})
    ssdlite = any(k.startswith('backbone.features.') for k in state_dict)
    if tops == sorted(_TOP_LEVEL) and not ssdlite:
        return
    others = [k for k in state_dict if not k.startswith(('backbone.', 'classifier.'))]
    hint = (f' Keys elsewhere: {", ".join(others[:3])}'
            + (f' and {len(others) - 3} more' if len(others) > 3 else '') + '.'
            if others else '')
    if ssdlite:
        hint += (' It looks like torchvision\'s SSDLite: convert it with '
                 'tools/model_converters/torchvision_ssdlite.py.')
    elif 'features' in tops:
        hint += (' It looks like a torchvision MobileNet classifier: convert it with '
                 'tools/model_converters/torchvision_mobilenet.py.')
    elif 'aux_classifier' in tops:
        hint += (' It has an aux_classifier, as torchvision\'s DeepLabV3 / FCN: only '
                 'LR-ASPP is supported.')
    elif 'decode_head' in tops:
        hint += ' It has decode_head.* keys: is it converted already?'
    raise ValueError(
        'not a torchvision LR-ASPP state dict: expected only keys under backbone.<i> '
        'and classifier (as lraspp_mobilenet_v3_large().state_dict() has), got keys '
        f'under {", ".join(tops) or "nothing"}.{hint}')


def _source_names(message: str) -> str:
    """``features.<i>`` in a backbone converter message -> the source's
    ``backbone.<i>``."""
    return re.sub(r'\bfeatures\.(\d+)', r'backbone.\1', message)


def _shape(w: Writer, key: str, expected: Tuple[int, ...], what: str) -> None:
    """Raise ValueError naming ``key`` unless its tensor has shape ``expected``."""
    shape = tuple(w.get(key).shape)
    if shape != tuple(expected):
        raise ValueError(f'{key} has shape {shape}, expected {tuple(expected)} ({what})')


def convert_torchvision_lraspp(state_dict: StateDict, *,
                               num_classes: Optional[int] = CONFIG_NUM_CLASSES,
                               channels: Optional[int] = CONFIG_CHANNELS,
                               target_eps: float = TARGET_EPS,
                               return_info: bool = False):
    """Convert a torchvision LR-ASPP state dict to our mmseg ``EncoderDecoder``.

    Args:
        state_dict (dict): ``lraspp_mobilenet_v3_large().state_dict()`` (the checkpoint
            ``lraspp_mobilenet_v3_large-d234d4ea.pth`` of ``COCO_WITH_VOC_LABELS_V1``).
        num_classes (int, optional): Classes of the model that will load the result
            (default: the config's 21, background + Pascal VOC); a state dict of other
            classes raises a ValueError saying what to set. None accepts any.
        channels (int, optional): The decode head's ``channels`` of that model
            (torchvision's ``inter_channels``; default the config's 128). None accepts
            any.
        target_eps (float): Backbone BN eps of that model (torchvision's and ours are
            1e-3; a difference is folded into the BN weights).
        return_info (bool): Also return a :class:`LRASPPConversionInfo`.

    Returns:
        dict: ``backbone.layers.*`` and ``decode_head.*`` tensors that load strictly
        into the model of ``configs/lraspp_v3_large_torchvision_voc.py``
        (``info.config``; ``info.backbone_cfg`` and ``info.decode_head_cfg`` describe
        it). With ``return_info``, ``(state_dict, info)``.

    Raises:
        ValueError: If it is not a torchvision LR-ASPP state dict with the full
            MobileNetV3-Large backbone, if a tensor is missing, left over or of another
            shape (the message names it), or if the classes or channels are not
            ``num_classes`` / ``channels``.
    """
    _check_is_lraspp(state_dict)
    source_eps = TORCHVISION_EPS['MobileNetV3']

    # -- the backbone: the torchvision MobileNetV3 converter ---------------------------
    features, back = {}, {}
    for key, value in state_dict.items():
        if key.startswith('backbone.'):
            features['features.' + key[len('backbone.'):]] = value
            back['features.' + key[len('backbone.'):]] = key
    try:
        backbone, mbv3_info = convert_torchvision(
            features, arch='mobilenet_v3_large', with_head=False, target_eps=target_eps,
            return_info=True)
    except ValueError as e:
        raise ValueError('the LR-ASPP backbone (backbone.<i>, torchvision MobileNetV3-'
                         f'Large features) does not convert: {_source_names(str(e))}'
                         ) from e
    if mbv3_info.backbone.get('reduced_tail'):
        raise ValueError('the backbone is MobileNetV3-Large with the reduced tail '
                         '(blocks 13-15 and the final conv at half width); '
                         'torchvision\'s lraspp_mobilenet_v3_large and '
                         f'{TORCHVISION_LRASPP_CONFIG} have the full one')
    high_index = len(child_indices(features, 'features.')) - 1
    layers = _strip(backbone)
    low_channels = layers[f'layers.{LOW_INDEX}.project_conv.bn.running_mean'].shape[0]
    high_channels = output_channels(layers)
    out = dict(backbone)
    key_map = {k: back.get(v, v) for k, v in mbv3_info.key_map.items()}

    # -- the head: our LRASPPHead ------------------------------------------------------
    w = Writer(state_dict, HEAD_EPS, HEAD_EPS)
    low_w = w.get('classifier.low_classifier.weight')
    high_w = w.get('classifier.high_classifier.weight')
    found_classes, found_channels = low_w.shape[0], high_w.shape[1]
    _shape(w, 'classifier.low_classifier.weight', (found_classes, low_channels, 1, 1),
           f'a 1x1 conv from the {low_channels} channels of backbone.{LOW_INDEX} to '
           'the classes')
    _shape(w, 'classifier.high_classifier.weight',
           (found_classes, found_channels, 1, 1),
           'a 1x1 conv to as many classes as classifier.low_classifier')
    for name in ('low_classifier', 'high_classifier'):
        _shape(w, f'classifier.{name}.bias', (found_classes, ), 'one per class')
    _shape(w, 'classifier.cbr.0.weight', (found_channels, high_channels, 1, 1),
           f'a 1x1 conv from the {high_channels} channels of backbone.{high_index} to '
           'the channels of classifier.high_classifier')
    _shape(w, 'classifier.scale.1.weight', (found_channels, high_channels, 1, 1),
           'the gate: as classifier.cbr.0')
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        _shape(w, f'classifier.cbr.1.{name}', (found_channels, ),
               'the BN of classifier.cbr.0')
    if num_classes is not None and found_classes != num_classes:
        raise ValueError(
            f'classifier.low_classifier.weight predicts {found_classes} classes '
            f'(torchvision\'s num_classes), the model {num_classes}'
            + (' (the 21 Pascal VOC classes of ' + TORCHVISION_LRASPP_CONFIG + ')'
               if num_classes == CONFIG_NUM_CLASSES else '')
            + f': convert with num_classes={found_classes} (--num-classes '
            f'{found_classes}) and set model.decode_head.num_classes={found_classes} '
            '(and a dataset of those classes) in a copy of the config')
    if channels is not None and found_channels != channels:
        raise ValueError(
            f'classifier.cbr.0.weight has {found_channels} output channels '
            f'(torchvision\'s inter_channels), the model\'s decode head {channels}: '
            f'convert with channels={found_channels} (--channels {found_channels}) and '
            f'set model.decode_head.channels={found_channels} in a copy of the config')
    w.conv_bn('decode_head.cbr', ConvBN('classifier.cbr.0.weight', 'classifier.cbr.1'))
    w.put('decode_head.scale_conv.weight', 'classifier.scale.1.weight')
    w.conv_bias('decode_head.low_classifier', 'classifier.low_classifier')
    w.conv_bias('decode_head.conv_seg', 'classifier.high_classifier')
    out.update(w.out)
    key_map.update(w.key_map)
    check_all_used(state_dict, [v for v in key_map.values() if v != '(zero)'],
                   'torchvision LR-ASPP')

    info = LRASPPConversionInfo(mbv3_info.backbone, (low_channels, high_channels),
                                found_channels, found_classes, high_index,
                                key_map=key_map)
    if info.config is None:
        info.notes.append(
            f'No config here builds this exact model; start from '
            f'{TORCHVISION_LRASPP_CONFIG} with '
            f'model.decode_head.num_classes={info.num_classes}, '
            f'model.decode_head.channels={info.channels}.')
    if source_eps != target_eps:
        info.notes.append(f'The source backbone BN eps {source_eps:g} is folded into '
                          f'the BN weights for eps {target_eps:g} (exact in eval mode).')
    return (out, info) if return_info else out


def _strip(backbone: StateDict) -> StateDict:
    """``backbone.layers.*`` -> ``layers.*``."""
    return {k[len('backbone.'):]: v for k, v in backbone.items()}


__all__ = ['TORCHVISION_LRASPP_CONFIG', 'LRASPPConversionInfo',
           'convert_torchvision_lraspp']
