"""MobileNetV2 ("MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018)."""
from typing import List, NamedTuple

from mobilenet_tasks.registry import MODELS
from .base_mobilenet import BaseMobileNet, BlockSpec, make_divisible


class Stage(NamedTuple):
    """A row of the MobileNetV2 paper's Table 2."""
    t: int  # expansion factor
    c: int  # output channels
    n: int  # repeats
    s: int  # stride of the first block


# Table 2: stem conv 32 (stride 2), 17 bottleneck blocks, conv 1x1 1280.
STAGES = [
    # t, c, n, s
    Stage(1, 16, 1, 1),  # block 1
    Stage(6, 24, 2, 2),  # blocks 2-3, os=4
    Stage(6, 32, 3, 2),  # blocks 4-6, os=8
    Stage(6, 64, 4, 2),  # blocks 7-10, os=16
    Stage(6, 96, 3, 1),  # blocks 11-13
    Stage(6, 160, 3, 2),  # blocks 14-16: C4 = expansion of block 14, os=16; then os=32
    Stage(6, 320, 1, 1),  # block 17
]
C4_BLOCK = 14  # "layer_15/expansion_output" in the TF reference (it counts the stem)


@MODELS.register_module()
class MobileNetV2(BaseMobileNet):
    """MobileNetV2 backbone, as torchvision's ``mobilenet_v2`` builds it.

    Channels are the table's times ``widen_factor`` rounded to multiples of 8; the
    expansion is ``round(in * t)``; the final 1x1 conv has ``1280 * max(1, widen_factor)``
    channels (rounded), so narrow models keep 1280 as in the paper.

    Args:
        widen_factor (float): Width multiplier, 0.35 to 1.4.
        reduced_tail (bool): Halve the output channels of block 14 (the C4 block) and of
            every later block (their expansions follow, ``t`` times their input), and the
            final conv: the MobileNetV3 paper's RF2 applied to V2 (Table 7 rows 2-4).
        scale_last_conv (bool): Scale the final 1x1 conv by ``widen_factor`` below 1
            as well, as the TF detection feature extractors do (SSDLite V2 0.35 has
            a 448-channel C5); classification keeps 1280.
        **kwargs: See :class:`BaseMobileNet`; ``act_cfg`` defaults to ReLU6.
    """
    default_act_cfg = dict(type='ReLU6')

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
                specs.append(BlockSpec(
                    in_channels=in_channels,
                    expand_channels=int(round(in_channels * stage.t)),
                    out_channels=out,
                    kernel_size=3,
                    stride=stage.s if i == 0 else 1))
                in_channels = out
        return specs

    def _last_channels(self, block_out_channels: int) -> int:
        width = self.widen_factor if self.scale_last_conv else max(1.0, self.widen_factor)
        last = make_divisible(1280 * width, 8)
        return last // 2 if self.reduced_tail else last
