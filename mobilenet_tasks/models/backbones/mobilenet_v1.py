"""MobileNetV1 ("MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", 2017)."""
from typing import List, NamedTuple

from mobilenet_tasks.registry import MODELS
from .base_mobilenet import BaseMobileNet, BlockSpec


class SepConv(NamedTuple):
    """A depthwise-separable row of the MobileNetV1 paper's Table 1."""
    c: int  # output channels of the pointwise conv
    s: int  # stride of the depthwise conv


# Table 1: stem conv 32 (stride 2), 13 depthwise-separable layers, no final conv.
LAYERS = [
    # c, s
    SepConv(64, 1),  # block 1
    SepConv(128, 2),  # block 2, os=4
    SepConv(128, 1),
    SepConv(256, 2),  # block 4, os=8
    SepConv(256, 1),
    SepConv(512, 2),  # block 6, os=16
    SepConv(512, 1),
    SepConv(512, 1),
    SepConv(512, 1),
    SepConv(512, 1),
    SepConv(512, 1),  # block 11: SSD's C4 (its output; V1 has no expansion layers)
    SepConv(1024, 2),  # block 12, os=32
    SepConv(1024, 1),  # block 13: C5
]


@MODELS.register_module()
class MobileNetV1(BaseMobileNet):
    """MobileNetV1 backbone: depthwise 3x3 + BN + act, pointwise 1x1 + BN + act.

    Args:
        widen_factor (float): Width multiplier, 0.25 to 1.25 (multiples of 8).
        **kwargs: See :class:`BaseMobileNet`; ``act_cfg`` defaults to ReLU6 (the TF
            reference). V1 has no expansion layers, so ``expansion_indices`` is empty.
    """
    widen_range = (0.25, 1.25)
    default_act_cfg = dict(type='ReLU6')

    def __init__(self, widen_factor: float = 1.0, **kwargs):
        super().__init__(widen_factor=widen_factor, **kwargs)

    def _block_specs(self) -> List[BlockSpec]:
        specs, in_channels = [], self._stem_channels()
        for row in LAYERS:
            out = self._width(row.c)
            specs.append(BlockSpec(
                in_channels=in_channels, expand_channels=in_channels,
                out_channels=out, kernel_size=3, stride=row.s,
                residual=False, project_act=True))
            in_channels = out
        return specs

    def _last_channels(self, block_out_channels: int) -> int:
        return 0
