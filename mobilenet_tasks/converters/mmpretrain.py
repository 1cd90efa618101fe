"""mmpretrain ``MobileNetV3`` checkpoints (``backbone.layer0`` ... ``backbone.layerN+1``)
to ours.

mmpretrain's ``layer0`` is the stem, ``layer1..N`` the blocks (``expand_conv``,
``depthwise_conv``, ``se.conv1`` / ``se.conv2``, ``linear_conv``) and ``layerN+1`` the
final conv: our ``layers.0..N+1`` one to one. Its BN eps is ours (1e-3). The classifier
(``head.*``, mmpretrain's own ``StackedLinearClsHead``) is copied unchanged: our
classification configs use the same head.

mmpretrain's archs ``'large'``, ``'small'`` and ``'small_075'`` are our Large 1.0,
Small 1.0 and Small 0.75; its ``'small_050'`` keeps a 16-channel stem and first block
where ours at width 0.5 has 8, so it has no equivalent here and is refused.
"""
from typing import Dict, List, Optional

from .info import ConversionInfo, finish
from .layout import (TARGET_EPS, SE, Block, ConvBN, Layout, check_all_used,
                     check_contiguous, child_indices, convert_layout)
from .matching import Candidate, candidates, match_backbone

#: Source arch (mmpretrain's ``arch``, without the width) -> our backbones it may be.
MMPRETRAIN_ARCHS: Dict[str, List[Candidate]] = {
    'large': candidates('MobileNetV3', (1.0, ), reduced_tail=False, arch='large'),
    'small': candidates('MobileNetV3', (1.0, 0.75, 0.5), reduced_tail=False,
                        arch='small'),
}

#: BN eps of mmpretrain's MobileNetV3 (its default ``norm_cfg``).
MMPRETRAIN_EPS = 1e-3


def mmpretrain_layout(backbone: Dict) -> Layout:
    """Read the positions of an mmpretrain MobileNetV3 backbone.

    Args:
        backbone (dict): The backbone's state dict (``layer0.conv.weight``, ...).

    Returns:
        Layout: Stem ``layer0``, blocks ``layer1..N``, final conv ``layerN+1``.
    """
    layers = child_indices(backbone, 'layer')
    if len(layers) < 3:
        raise ValueError('the state dict has no mmpretrain MobileNetV3 layers '
                         '(backbone.layer0, backbone.layer1, ...)')
    check_contiguous(layers, 'the mmpretrain layers')
    blocks = []
    for i in layers[1:-1]:
        p = f'layer{i}'
        if f'{p}.depthwise_conv.conv.weight' not in backbone:
            raise ValueError(f'backbone.{p} is not an mmpretrain InvertedResidual')
        expand = (ConvBN(f'{p}.expand_conv.conv.weight', f'{p}.expand_conv.bn')
                  if f'{p}.expand_conv.conv.weight' in backbone else None)
        se = (SE(f'{p}.se.conv1.conv', f'{p}.se.conv2.conv')
              if f'{p}.se.conv1.conv.weight' in backbone else None)
        blocks.append(Block(
            expand=expand,
            depthwise=ConvBN(f'{p}.depthwise_conv.conv.weight',
                             f'{p}.depthwise_conv.bn'),
            se=se,
            project=ConvBN(f'{p}.linear_conv.conv.weight', f'{p}.linear_conv.bn')))
    last = layers[-1]
    return Layout(stem=ConvBN('layer0.conv.weight', 'layer0.bn'), blocks=tuple(blocks),
                  final=ConvBN(f'layer{last}.conv.weight', f'layer{last}.bn'))


def convert_mmpretrain_mobilenet_v3(state_dict: Dict, arch: Optional[str] = None, *,
                                    with_head: bool = True,
                                    target_eps: float = TARGET_EPS,
                                    return_info: bool = False):
    """Convert an mmpretrain MobileNetV3 state dict to ours.

    Args:
        state_dict (dict): An mmpretrain ``ImageClassifier`` state dict
            (``backbone.layer0.conv.weight``, ..., ``head.layers.0.fc.weight``, ...), as
            in its checkpoints' ``state_dict``; or a lone backbone's (``layer0...``).
        arch (str, optional): ``'large'`` or ``'small'`` (``'small_075'`` is taken as
            ``'small'``); None infers it. The width (mmpretrain's ``small_075`` is our
            Small at 0.75) is inferred from the shapes.
        with_head (bool): Also copy the ``head.*`` tensors, if there are any.
        target_eps (float): BN eps of the model that will load the result.
        return_info (bool): Also return a :class:`ConversionInfo`.

    Returns:
        dict: ``backbone.<our key>`` (and ``head.<key>``) -> tensor; with
        ``return_info``, a tuple ``(state_dict, info)``.

    Raises:
        ValueError: If it is not an mmpretrain MobileNetV3 state dict, or not of
            ``arch``.
    """
    if arch is not None and arch.startswith('small_'):
        arch = 'small'  # mmpretrain's width variants; the width comes from the shapes
    if any(k.startswith('backbone.') for k in state_dict):
        src = {k[len('backbone.'):]: v for k, v in state_dict.items()
               if k.startswith('backbone.')}
        head_src = {k[len('head.'):]: v for k, v in state_dict.items()
                    if k.startswith('head.')}
        others = [k for k in state_dict if not k.startswith(('backbone.', 'head.'))]
        if others:
            raise ValueError(f'tensors outside backbone. and head.: {others[:8]}; not '
                             'an mmpretrain ImageClassifier state dict?')
    else:
        src, head_src = state_dict, {}
    layout = mmpretrain_layout(src)
    backbone, key_map = convert_layout(src, layout, MMPRETRAIN_EPS, target_eps)
    check_all_used(src, list(key_map.values()), 'mmpretrain')
    found_arch, found = match_backbone(backbone, len(layout.blocks), MMPRETRAIN_ARCHS,
                                       arch, 'mmpretrain', key_map)

    head, head_cfg = {}, None
    if with_head and head_src:
        head = dict(head_src)
        head_cfg = _head_cfg(head)
    info = ConversionInfo('mmpretrain', found_arch, found,
                          key_map={k: f'backbone.{v}' for k, v in key_map.items()})
    out = finish(info, backbone, head, head_cfg, MMPRETRAIN_EPS, target_eps)
    info.key_map.update({f'head.{k}': f'head.{k}' for k in head})
    return (out, info) if return_info else out


def _head_cfg(head: Dict) -> dict:
    """The mmpretrain head config that ``head.*`` tensors fit: a StackedLinearClsHead
    (``layers.<i>.fc``) or a LinearClsHead (``fc``)."""
    if 'fc.weight' in head and set(head) == {'fc.weight', 'fc.bias'}:
        return dict(type='LinearClsHead', in_channels=head['fc.weight'].shape[1],
                    num_classes=head['fc.weight'].shape[0])
    n = len(child_indices(head, 'layers.'))
    expected = {f'layers.{i}.fc.{p}' for i in range(n) for p in ('weight', 'bias')}
    if n < 2 or set(head) != expected:
        raise ValueError(f'the head is neither a LinearClsHead nor a plain '
                         f'StackedLinearClsHead (keys {sorted(head)[:8]}); pass '
                         'with_head=False (--no-head) to convert the backbone only')
    return dict(type='StackedLinearClsHead',
                in_channels=head['layers.0.fc.weight'].shape[1],
                mid_channels=[head[f'layers.{i}.fc.weight'].shape[0]
                              for i in range(n - 1)],
                num_classes=head[f'layers.{n - 1}.fc.weight'].shape[0])
