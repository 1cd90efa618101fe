"""torchvision ``mobilenet_v3_large`` / ``mobilenet_v3_small`` / ``mobilenet_v2`` state
dicts to ours.

torchvision's ``features.0`` is the stem, ``features.1..N`` the blocks and
``features.N+1`` the final conv: they become our ``layers.0..N+1`` one to one. Its
``dilated=True`` changes no weight (our ``output_stride=16`` uses the same dilation
rule), and ``reduced_tail=True`` is inferred from the channel counts.
"""
from typing import Dict, List, Optional

from .info import ConversionInfo, finish
from .layout import (TARGET_EPS, ConvBN, Layout, block_from_units, check_all_used,
                     check_contiguous, child_indices, convert_layout, copy_linears,
                     units_from_sequential)
from .matching import Candidate, candidates, match_backbone

#: Source arch (torchvision's builder name) -> our backbones it may be, likeliest first.
#: torchvision builds V3 at width 1.0 only (its internal ``width_mult`` scales the
#: expansion sizes of the table, where ours and timm's scale the rounded input channels
#: by the expansion ratio: they differ below and above 1.0).
TORCHVISION_ARCHS: Dict[str, List[Candidate]] = {
    'mobilenet_v3_large': candidates('MobileNetV3', (1.0, ), arch='large'),
    'mobilenet_v3_small': candidates('MobileNetV3', (1.0, ), arch='small'),
    # torchvision's MobileNetV2 has no reduced tail; width_mult is any float.
    'mobilenet_v2': candidates('MobileNetV2', (1.0, 0.75, 0.5, 0.35, 1.3, 1.4),
                               reduced_tail=False),
}

#: BN eps of torchvision's models: V3 uses 1e-3 (as ours), V2 PyTorch's default 1e-5.
TORCHVISION_EPS = {'MobileNetV3': 1e-3, 'MobileNetV2': 1e-5}


def torchvision_layout(state_dict: Dict) -> Layout:
    """Read the positions of a torchvision MobileNetV2/V3 ``features``.

    Args:
        state_dict (dict): A torchvision ``MobileNetV2`` / ``MobileNetV3`` state dict.

    Returns:
        Layout: Stem ``features.0``, blocks ``features.1..N``, final conv
        ``features.N+1``.
    """
    features = child_indices(state_dict, 'features.')
    if len(features) < 3:
        raise ValueError('the state dict has no torchvision MobileNet "features" '
                         f'(found {len(features)} of them); keys start with '
                         f'{sorted({k.split(".")[0] for k in state_dict})}')
    check_contiguous(features, 'the torchvision features')
    last = features[-1]
    blocks = []
    for i in features[1:-1]:
        # V3's InvertedResidual holds a Sequential "block", V2's a Sequential "conv".
        body = next((f'features.{i}.{name}' for name in ('block', 'conv')
                     if any(k.startswith(f'features.{i}.{name}.') for k in state_dict)),
                    None)
        if body is None:
            raise ValueError(f'features.{i} is not a torchvision inverted residual (it '
                             'has neither .block nor .conv)')
        blocks.append(block_from_units(units_from_sequential(state_dict, body),
                                       state_dict, f'features.{i}'))
    return Layout(stem=ConvBN('features.0.0.weight', 'features.0.1'),
                  blocks=tuple(blocks),
                  final=ConvBN(f'features.{last}.0.weight', f'features.{last}.1'))


def convert_torchvision(state_dict: Dict, arch: Optional[str] = None, *,
                        with_head: bool = True, target_eps: float = TARGET_EPS,
                        return_info: bool = False):
    """Convert a torchvision MobileNetV3 / V2 state dict to ours.

    Args:
        state_dict (dict): ``torchvision.models.mobilenet_v3_large().state_dict()`` (or
            ``_small``, ``mobilenet_v2``; any ``reduced_tail`` / ``dilated``).
        arch (str, optional): ``'mobilenet_v3_large'``, ``'mobilenet_v3_small'`` or
            ``'mobilenet_v2'``; None infers it. Width and reduced tail are inferred from
            the shapes either way.
        with_head (bool): Also convert the classifier, if the state dict has one:
            V3's ``classifier.0`` / ``classifier.3`` become mmpretrain
            ``StackedLinearClsHead``'s ``head.layers.0.fc`` / ``head.layers.1.fc`` (the
            hidden layer is 1280 for Large, 1024 for Small, 640 / 512 with the reduced
            tail), V2's ``classifier.1`` becomes ``LinearClsHead``'s ``head.fc``.
        target_eps (float): BN eps of the model that will load the result; torchvision
            V2's eps 1e-5 is folded into the BN weights for it.
        return_info (bool): Also return a :class:`ConversionInfo`.

    Returns:
        dict: ``backbone.<our key>`` (and ``head.<key>``) -> tensor, which loads
        strictly into an mmpretrain ImageClassifier with backbone ``info.backbone.cfg``
        and head ``info.head`` (``info.config``, our ``configs/classification`` config
        of that arch, where there is one). With ``return_info``, a tuple
        ``(state_dict, info)``.

    Raises:
        ValueError: If it is not a torchvision MobileNet state dict, or not of ``arch``.
    """
    layout = torchvision_layout(state_dict)
    v3 = any('.block.' in k for k in state_dict)
    if arch is None:
        # V2 and V3 have different module layouts: only match within the right family.
        archs = {k: v for k, v in TORCHVISION_ARCHS.items()
                 if (k != 'mobilenet_v2') == v3}
    else:
        archs = TORCHVISION_ARCHS
    family = 'MobileNetV3' if v3 else 'MobileNetV2'
    source_eps = TORCHVISION_EPS[family]
    backbone, key_map = convert_layout(state_dict, layout, source_eps, target_eps)
    match_arch, found = match_backbone(backbone, len(layout.blocks), archs, arch,
                                       'torchvision', key_map)

    head, head_map, head_cfg = {}, {}, None
    has_classifier = any(k.startswith('classifier.') for k in state_dict)
    if with_head and has_classifier:
        if v3:
            head, head_map = copy_linears(state_dict, [('layers.0.fc', 'classifier.0'),
                                                       ('layers.1.fc', 'classifier.3')])
            head_cfg = dict(type='StackedLinearClsHead',
                            in_channels=head['layers.0.fc.weight'].shape[1],
                            mid_channels=[head['layers.0.fc.weight'].shape[0]],
                            num_classes=head['layers.1.fc.weight'].shape[0])
        else:
            head, head_map = copy_linears(state_dict, [('fc', 'classifier.1')])
            head_cfg = dict(type='LinearClsHead', in_channels=head['fc.weight'].shape[1],
                            num_classes=head['fc.weight'].shape[0])
    used = list(key_map.values()) + list(head_map.values())
    if has_classifier and not head_map:
        used += [k for k in state_dict if k.startswith('classifier.')]
    check_all_used(state_dict, used, 'torchvision')

    info = ConversionInfo('torchvision', match_arch, found, key_map=dict(key_map))
    out = finish(info, backbone, head, head_cfg, source_eps, target_eps)
    info.key_map.update({f'head.{k}': v for k, v in head_map.items()})
    if found.get('reduced_tail'):
        info.notes.append('Reduced tail: no config in configs/classification builds it; '
                          'use the backbone (reduced_tail=True) and head cfgs of meta.')
    return (out, info) if return_info else out
