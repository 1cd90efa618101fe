"""timm ``mobilenetv3_large_*`` / ``mobilenetv3_small_*`` (``MobileNetV3``) and
``mnasnet_a1`` (= ``semnasnet_100``) / ``mobilenetv2_*`` (``EfficientNet``) state dicts
to ours.

timm nests its blocks in stages (``blocks.<stage>.<block>``); flattened in order they
are our ``layers.1..N``. The final 1x1 conv is, in timm's MobileNetV3, the last "stage"
(``blocks.6.0``, a ConvBnAct) and its ``conv_head`` (a biased 1x1 conv after pooling,
no BN) is the classifier's hidden layer; in timm's EfficientNet (MnasNet, MobileNetV2)
the final conv is ``conv_head`` + ``bn2``.

Only output stride 32 is equivalent: for ``output_stride`` 8 or 16, timm dilates the
blocks *after* the one that would have strided, while ours (torchvision's convention)
already dilates that block, so the weights load but the features differ. Convert timm
models built at output stride 32 (its default) and choose ours' ``output_stride``
freely, knowing that the dilated model is ours, not timm's.

timm's models use PyTorch's BN eps 1e-5 where ours use 1e-3: the difference is folded
into the BN weights (exact in eval mode).

Not supported: timm's ``tf_*`` ports (``tf_mobilenetv3_large_100``, ...). They have the
same keys and shapes, so nothing in a state dict tells them apart, but they use TF
"same" (asymmetric) padding and BN eps 1e-3: converted as above, their outputs differ.
"""
from typing import Dict, List, Optional

from .info import ConversionInfo, finish
from .layout import (TARGET_EPS, SE, Block, ConvBN, Layout, check_all_used,
                     check_contiguous, child_indices, convert_layout, copy_linears)
from .matching import Candidate, candidates, match_backbone

#: Source arch -> our backbones it may be, likeliest first. timm's model names
#: (``mobilenetv3_large_100``, ``semnasnet_100``, ...) are these plus a width suffix.
#: timm has no reduced-tail models.
TIMM_ARCHS: Dict[str, List[Candidate]] = {
    'mobilenetv3_large': candidates('MobileNetV3', (1.0, 0.75, 0.5, 0.35, 1.25),
                                    reduced_tail=False, arch='large'),
    'mobilenetv3_small': candidates('MobileNetV3', (1.0, 0.75, 0.5, 0.35, 1.25),
                                    reduced_tail=False, arch='small'),
    'mnasnet_a1': candidates('MnasNet', (1.0, 0.75, 0.5, 0.35, 1.4), reduced_tail=False),
    'mobilenetv2': candidates('MobileNetV2', (1.0, 0.75, 0.5, 0.35, 1.4),
                              reduced_tail=False),
}

#: BN eps of timm's (non-``tf_``) models: PyTorch's default.
TIMM_EPS = 1e-5


def _se(state_dict: Dict, prefix: str) -> Optional[SE]:
    if f'{prefix}.se.conv_reduce.weight' in state_dict:
        return SE(f'{prefix}.se.conv_reduce', f'{prefix}.se.conv_expand')
    return None


def timm_layout(state_dict: Dict) -> Layout:
    """Read the positions of a timm MobileNetV3 / EfficientNet-family model.

    Args:
        state_dict (dict): A timm ``MobileNetV3`` or ``EfficientNet`` state dict.

    Returns:
        Layout: Stem ``conv_stem`` + ``bn1``; the blocks in stage order; the final conv
        (``blocks.<last>.0``, or ``conv_head`` + ``bn2``).
    """
    if 'conv_stem.weight' not in state_dict:
        roots = sorted({k.split('.')[0] for k in state_dict})
        raise ValueError('the state dict has no conv_stem.weight: not a timm MobileNet '
                         f'(keys start with {roots})')
    stages = child_indices(state_dict, 'blocks.')
    check_contiguous(stages, 'the timm stages (blocks.<i>)')
    blocks, final = [], None
    for s in stages:
        indices = child_indices(state_dict, f'blocks.{s}.')
        check_contiguous(indices, f'the blocks of blocks.{s}')
        for b in indices:
            p = f'blocks.{s}.{b}'
            if final is not None:
                raise ValueError(f'{p} comes after the final conv {final.conv}')
            if f'{p}.conv_pwl.weight' in state_dict:  # InvertedResidual
                blocks.append(Block(expand=ConvBN(f'{p}.conv_pw.weight', f'{p}.bn1'),
                                    depthwise=ConvBN(f'{p}.conv_dw.weight', f'{p}.bn2'),
                                    se=_se(state_dict, p),
                                    project=ConvBN(f'{p}.conv_pwl.weight', f'{p}.bn3')))
            elif f'{p}.conv_dw.weight' in state_dict:  # DepthwiseSeparableConv
                blocks.append(Block(depthwise=ConvBN(f'{p}.conv_dw.weight', f'{p}.bn1'),
                                    se=_se(state_dict, p),
                                    project=ConvBN(f'{p}.conv_pw.weight', f'{p}.bn2')))
            elif f'{p}.conv.weight' in state_dict:  # ConvBnAct: MobileNetV3's final conv
                final = ConvBN(f'{p}.conv.weight', f'{p}.bn1')
            else:
                keys = [k for k in state_dict if k.startswith(p + '.')]
                raise ValueError(f'{p} is not a timm InvertedResidual, '
                                 f'DepthwiseSeparableConv or ConvBnAct (keys {keys})')
    if 'bn2.weight' in state_dict:  # EfficientNet: conv_head + bn2 is the final conv
        if final is not None:
            raise ValueError(f'two final convs: {final.conv} and conv_head + bn2')
        final = ConvBN('conv_head.weight', 'bn2')
    return Layout(stem=ConvBN('conv_stem.weight', 'bn1'), blocks=tuple(blocks),
                  final=final)


def convert_timm(state_dict: Dict, arch: Optional[str] = None, *, with_head: bool = True,
                 target_eps: float = TARGET_EPS, return_info: bool = False):
    """Convert a timm MobileNetV3 / MnasNet-A1 / MobileNetV2 state dict to ours.

    Equivalent at output stride 32 only (see the module docstring: timm places the
    dilation of ``output_stride`` < 32 one block later than ours).

    Args:
        state_dict (dict): e.g. ``timm.create_model('mobilenetv3_large_100')
            .state_dict()``.
        arch (str, optional): ``'mobilenetv3_large'``, ``'mobilenetv3_small'``,
            ``'mnasnet_a1'`` or ``'mobilenetv2'``; a timm model name with a width
            suffix (``'mobilenetv3_large_100'``, ``'semnasnet_100'``) is accepted too.
            None infers it; the width is inferred from the shapes either way.
        with_head (bool): Also convert the classifier, if the state dict has one:
            MobileNetV3's ``conv_head`` (1x1 conv with bias, 1280 / 1024) and
            ``classifier`` become mmpretrain ``StackedLinearClsHead``'s
            ``head.layers.0.fc`` / ``head.layers.1.fc``; EfficientNet's ``classifier``
            becomes ``LinearClsHead``'s ``head.fc``.
        target_eps (float): BN eps of the model that will load the result; timm's eps
            1e-5 is folded into the BN weights for it.
        return_info (bool): Also return a :class:`ConversionInfo`.

    Returns:
        dict: ``backbone.<our key>`` (and ``head.<key>``) -> tensor; with
        ``return_info``, a tuple ``(state_dict, info)``.

    Raises:
        ValueError: If it is not a supported timm state dict, or not of ``arch``.
    """
    arch = _normalize_arch(arch)
    layout = timm_layout(state_dict)
    backbone, key_map = convert_layout(state_dict, layout, TIMM_EPS, target_eps)
    efficientnet = 'bn2.weight' in state_dict
    archs = TIMM_ARCHS if arch is not None else {
        k: v for k, v in TIMM_ARCHS.items()
        if k.startswith('mobilenetv3') != efficientnet}
    found_arch, found = match_backbone(backbone, len(layout.blocks), archs, arch, 'timm',
                                       key_map)

    head, head_map, head_cfg = {}, {}, None
    head_keys = [k for k in state_dict if k.startswith(('conv_head.', 'classifier.'))
                 and k not in key_map.values()]
    if with_head and 'classifier.weight' in state_dict:
        if efficientnet:
            head, head_map = copy_linears(state_dict, [('fc', 'classifier')])
            head_cfg = dict(type='LinearClsHead', in_channels=head['fc.weight'].shape[1],
                            num_classes=head['fc.weight'].shape[0])
        else:
            head, head_map = copy_linears(state_dict, [('layers.0.fc', 'conv_head'),
                                                       ('layers.1.fc', 'classifier')])
            head_cfg = dict(type='StackedLinearClsHead',
                            in_channels=head['layers.0.fc.weight'].shape[1],
                            mid_channels=[head['layers.0.fc.weight'].shape[0]],
                            num_classes=head['layers.1.fc.weight'].shape[0])
    check_all_used(state_dict, list(key_map.values()) + head_keys, 'timm')

    info = ConversionInfo('timm', found_arch, found, key_map=dict(key_map))
    out = finish(info, backbone, head, head_cfg, TIMM_EPS, target_eps)
    info.key_map.update({f'head.{k}': v for k, v in head_map.items()})
    if head_keys and not head_map:
        info.notes.append(f'Not converted: {", ".join(head_keys)} (no classifier '
                          'asked for, or timm\'s conv_head without a classifier).')
    return (out, info) if return_info else out


def _normalize_arch(arch: Optional[str]) -> Optional[str]:
    """``'mobilenetv3_large_100'`` -> ``'mobilenetv3_large'``, ``'semnasnet_100'`` ->
    ``'mnasnet_a1'``; other names unchanged."""
    if arch is None or arch in TIMM_ARCHS:
        return arch
    if arch.startswith('tf_'):
        raise ValueError(f'{arch}: timm\'s tf_* models use TF "same" padding and BN eps '
                         '1e-3, which ours do not; they cannot be converted')
    if arch.startswith('semnasnet_'):
        return 'mnasnet_a1'
    base, _, suffix = arch.rpartition('_')
    return base if base in TIMM_ARCHS and suffix.isdigit() else arch
