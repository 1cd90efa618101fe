"""MnasNet-A1 ("MnasNet: Platform-Aware Neural Architecture Search for Mobile", 2019)."""
from typing import List, NamedTuple

from mobilenet_tasks.registry import MODELS
from .base_mobilenet import BaseMobileNet, BlockSpec, make_divisible


class Stage(NamedTuple):
    """A stage of MnasNet-A1 (the MnasNet paper's Figure 7)."""
    op: str  # 'SepConv' (depthwise-separable, no residual) or 'MBConv' (inverted residual)
    e: int  # expansion factor
    k: int  # depthwise kernel size
    c: int  # output channels
    n: int  # repeats
    s: int  # stride of the first block
    se: bool  # squeeze-and-excitation, a quarter of the block's input channels


# Stem conv 32 (stride 2), 16 blocks, conv 1x1 1280 (not scaled by width, as in the
# TF reference and timm's mnasnet_a1 / semnasnet_100). Activation ReLU, SE gate sigmoid.
STAGES = [
    # op, e, k, c, n, s, se
    Stage('SepConv', 1, 3, 16, 1, 1, False),  # block 1
    Stage('MBConv', 6, 3, 24, 2, 2, False),  # blocks 2-3, os=4
    Stage('MBConv', 3, 5, 40, 3, 2, True),  # blocks 4-6, os=8
    Stage('MBConv', 6, 3, 80, 4, 2, False),  # blocks 7-10, os=16
    Stage('MBConv', 6, 3, 112, 2, 1, True),  # blocks 11-12
    Stage('MBConv', 6, 5, 160, 3, 2, True),  # blocks 13-15: C4 = expansion of 13; os=32
    Stage('MBConv', 6, 3, 320, 1, 1, False),  # block 16
]
C4_BLOCK = 13


@MODELS.register_module()
class MnasNet(BaseMobileNet):
    """MnasNet-A1 backbone, as timm's ``mnasnet_a1`` (``semnasnet_100``) builds it.

    Args:
        widen_factor (float): Width multiplier, 0.35 to 1.4 (channels rounded to
            multiples of 8; the expansion is ``make_divisible(in * e)``).
        reduced_tail (bool): Halve the outputs of block 13 (the C4 block) and of every
            later block, and the final conv, as the MobileNetV3 paper's dagger / RF2.
        scale_last_conv (bool): Scale the final 1x1 conv by ``widen_factor`` below 1
            as well, as the TF detection feature extractors do (SSDLite V2 0.35 has
            a 448-channel C5); classification keeps 1280.
        **kwargs: See :class:`BaseMobileNet`; ``act_cfg`` defaults to ReLU.
    """
    default_act_cfg = dict(type='ReLU')
    se_gate = 'sigmoid'

    def __init__(self, widen_factor: float = 1.0, reduced_tail: bool = False,
                 scale_last_conv: bool = False, **kwargs):
        self.reduced_tail = reduced_tail
        self.scale_last_conv = scale_last_conv
        super().__init__(widen_factor=widen_factor, **kwargs)

    def _block_specs(self) -> List[BlockSpec]:
        specs, in_channels = [], self._stem_channels()
        for stage in STAGES:
            for i in range(stage.n):
                index = len(specs) + 1
                out = stage.c // 2 if self.reduced_tail and index >= C4_BLOCK else stage.c
                out = self._width(out)
                sep = stage.op == 'SepConv'
                expand = in_channels if sep else make_divisible(in_channels * stage.e, 8)
                specs.append(BlockSpec(
                    in_channels=in_channels,
                    expand_channels=expand,
                    out_channels=out,
                    kernel_size=stage.k,
                    stride=stage.s if i == 0 else 1,
                    # timm: round(mid * 0.25 / e), a quarter of the input channels
                    se_channels=round(expand * 0.25 / stage.e) if stage.se else 0,
                    residual=not sep))
                in_channels = out
        return specs

    def _last_channels(self, block_out_channels: int) -> int:
        last = make_divisible(1280 * self.widen_factor, 8) if self.scale_last_conv else 1280
        return last // 2 if self.reduced_tail else last
