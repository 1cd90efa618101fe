"""MobileNetV3 ("Searching for MobileNetV3", Howard et al., 2019)."""
from typing import List, NamedTuple

from mobilenet_tasks.registry import MODELS
from .base_mobilenet import BaseMobileNet, BlockSpec, make_divisible


class Bneck(NamedTuple):
    """A row of the paper's Table 1 / Table 2."""
    kernel: int  # depthwise kernel size
    exp: int  # expansion size
    out: int  # output channels
    se: bool  # squeeze-and-excite
    nl: str  # non-linearity: 'RE' (ReLU) or 'HS' (h-swish, the backbone's act_cfg)
    s: int  # stride


class MobileNetV3Arch(NamedTuple):
    blocks: List[Bneck]
    c4: int  # the block whose expansion is SSDLite's C4 (output stride 16)


# The stem is a 3x3 stride-2 conv with 16 channels and h-swish in both.
ARCHS = {
    # Table 1. The last conv is 6x the last block's output (960), h-swish.
    'large': MobileNetV3Arch(c4=13, blocks=[
        # kernel, exp, out, se, nl, s
        Bneck(3, 16, 16, False, 'RE', 1),
        Bneck(3, 64, 24, False, 'RE', 2),  # os=4
        Bneck(3, 72, 24, False, 'RE', 1),
        Bneck(5, 72, 40, True, 'RE', 2),  # os=8
        Bneck(5, 120, 40, True, 'RE', 1),
        Bneck(5, 120, 40, True, 'RE', 1),
        Bneck(3, 240, 80, False, 'HS', 2),  # os=16
        Bneck(3, 200, 80, False, 'HS', 1),
        Bneck(3, 184, 80, False, 'HS', 1),
        Bneck(3, 184, 80, False, 'HS', 1),
        Bneck(3, 480, 112, True, 'HS', 1),
        Bneck(3, 672, 112, True, 'HS', 1),
        Bneck(5, 672, 160, True, 'HS', 2),  # C4 = this expansion, os=16; then os=32
        Bneck(5, 960, 160, True, 'HS', 1),
        Bneck(5, 960, 160, True, 'HS', 1),
    ]),
    # Table 2. The last conv is 6x the last block's output (576), h-swish.
    'small': MobileNetV3Arch(c4=9, blocks=[
        # kernel, exp, out, se, nl, s
        Bneck(3, 16, 16, True, 'RE', 2),  # os=4
        Bneck(3, 72, 24, False, 'RE', 2),  # os=8
        Bneck(3, 88, 24, False, 'RE', 1),
        Bneck(5, 96, 40, True, 'HS', 2),  # os=16
        Bneck(5, 240, 40, True, 'HS', 1),
        Bneck(5, 240, 40, True, 'HS', 1),
        Bneck(5, 120, 48, True, 'HS', 1),
        Bneck(5, 144, 48, True, 'HS', 1),
        Bneck(5, 288, 96, True, 'HS', 2),  # C4 = this expansion, os=16; then os=32
        Bneck(5, 576, 96, True, 'HS', 1),
        Bneck(5, 576, 96, True, 'HS', 1),
    ]),
}


@MODELS.register_module()
class MobileNetV3(BaseMobileNet):
    """MobileNetV3-Large or -Small backbone.

    Every channel count is the table's times ``widen_factor``, rounded to a multiple of
    8; the SE squeeze is a quarter of the expansion, rounded the same way; the final 1x1
    conv has 6x the last block's channels. These match torchvision's ``mobilenet_v3_*``,
    timm's ``mobilenetv3_*_100`` and the TF reference.

    Args:
        arch (str): ``'large'`` or ``'small'``.
        widen_factor (float): Width multiplier, 0.35 to 1.25.
        reduced_tail (bool): The paper's dagger (detection) / RF2 (segmentation): the
            output of the C4 block (13 in Large, 9 in Small) and of every later block
            are halved before width scaling (their expansions follow from their halved
            inputs), as in torchvision's ``_reduced_tail`` and the TF detection
            API's ``V3_LARGE_DETECTION``; C4's expansion is kept (it is SSDLite's C4).
        halve_c4_expansion (bool): With ``reduced_tail``, halve the C4 block's
            expansion as well (672 -> 336 in Large, 288 -> 144 in Small), as TF
            DeepLab's ``mobilenet_v3_{large,small}_seg`` do for the paper's segmentation
            models: Table 7's RF2 parameter counts are these (Large RF2 + R-ASPP has
            1.76M parameters with it, 2.00M without).
        **kwargs: See :class:`BaseMobileNet` (``out_indices``, ``expansion_indices``,
            ``output_stride``, ``frozen_stages``, ``norm_eval``, ``with_cp``,
            ``conv_cfg``, ``norm_cfg``, ``act_cfg`` (default h-swish), ``init_cfg``).

    Example:
        SSDLite's C4 and C5 of MobileNetV3-Large:

        >>> m = MobileNetV3('large', expansion_indices=(13,), out_indices=(16,))
        >>> m.out_channels, m.strides
        ((672, 960), (16, 32))
    """
    stem = 16
    widen_range = (0.35, 1.25)
    default_act_cfg = dict(type='HSwish')
    se_gate = 'hsigmoid'
    arch_settings = ARCHS

    def __init__(self, arch: str = 'large', widen_factor: float = 1.0,
                 reduced_tail: bool = False, halve_c4_expansion: bool = False,
                 **kwargs):
        if arch not in self.arch_settings:
            raise ValueError(f'arch must be one of {sorted(self.arch_settings)}, '
                             f'got {arch!r}')
        if halve_c4_expansion and not reduced_tail:
            raise ValueError('halve_c4_expansion=True is part of the reduced tail: '
                             'set reduced_tail=True as well')
        self.arch = arch
        self.reduced_tail = reduced_tail
        self.halve_c4_expansion = halve_c4_expansion
        super().__init__(widen_factor=widen_factor, **kwargs)

    def _block_specs(self) -> List[BlockSpec]:
        arch = self.arch_settings[self.arch]
        divider = 2 if self.reduced_tail else 1
        specs, in_channels, table_in = [], self._stem_channels(), self.stem
        for index, row in enumerate(arch.blocks, start=1):
            # The TF reference (and timm) expand by a ratio of the block's *rounded*
            # input channels; the table's "exp size" is that ratio at width 1.0.
            ratio, table_in = row.exp / table_in, row.out
            out = row.out // divider if index >= arch.c4 else row.out
            out = self._width(out)
            if index == arch.c4 and self.halve_c4_expansion:
                ratio /= 2
            exp = make_divisible(in_channels * ratio, 8)
            specs.append(BlockSpec(
                in_channels=in_channels,
                expand_channels=exp,
                out_channels=out,
                kernel_size=row.kernel,
                stride=row.s,
                se_channels=make_divisible(exp / 4, 8) if row.se else 0,
                act='relu' if row.nl == 'RE' else 'act'))
            in_channels = out
        return specs

    def _last_channels(self, block_out_channels: int) -> int:
        return 6 * block_out_channels
