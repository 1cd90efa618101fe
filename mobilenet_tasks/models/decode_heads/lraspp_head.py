"""The MobileNetV3 paper's Lite R-ASPP segmentation head, as an mmseg decode head."""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.registry import DefaultScope
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize

from mobilenet_tasks.registry import MODELS


def _pair(value, name: str) -> Tuple[int, int]:
    """``value`` as a pair of positive ints, or a ValueError naming ``name``."""
    pair = (value, value) if isinstance(value, int) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in pair)):
        raise ValueError(
            f'{name} must be a positive int or a pair of positive ints, got {value!r}')
    return tuple(pair)


@MODELS.register_module()
class LRASPPHead(BaseDecodeHead):
    """Lite R-ASPP of "Searching for MobileNetV3" (Howard et al., 2019), Figure 10.

    Why ours: mmseg's ``LRASPPHead`` is a different design (two skip branches with
    concatenation and extra 1x1 convs) and hard-codes ``AvgPool2d(49, stride=(16, 20))``,
    which fails on any input whose last feature map is under 49 px high; torchvision's
    ``LRASPPHead`` is the paper's head but only with global pooling and not an mmseg
    decode head (no losses, no ``predict``). Refer to this one as
    ``type='mobilenet_tasks.LRASPPHead'`` from mmseg configs (the bare name is mmseg's).

    Computation, with ``low, high = inputs[in_index[0]], inputs[in_index[1]]``
    (``low`` at output stride 8, ``high`` the last feature, output stride 16 or 32)::

        x = cbr(high)                                   # 1x1 conv + BN + ReLU
        s = sigmoid(scale_conv(avg_pool(high)))         # 1x1 conv, no bias
        x = x * resize(s, high.shape[2:], bilinear)     # gate (broadcast if global)
        x = resize(x, low.shape[2:], bilinear)
        out = conv_seg(dropout(x)) + low_classifier(low)

    Pooling: the paper's average pool of kernel ``pool_kernel`` and stride
    ``pool_stride`` (defaults (49, 49) and (16, 20), its Cityscapes 1024x2048 setting),
    or global average pooling with ``global_pool=True`` (torchvision's, and the one to
    use for small or variable inputs). If ``high`` is smaller than the kernel, forward
    raises a ValueError (we do not clamp the kernel silently: a clamped kernel is a
    different model from the one configured); the message suggests ``global_pool=True``.

    With ``global_pool=True`` and ``dropout_ratio=0`` this head computes exactly
    torchvision's ``LRASPPHead(low_c, high_c, num_classes, channels)``: its ``cbr``
    maps to ``cbr.conv``/``cbr.bn``, ``scale[1]`` to ``scale_conv``,
    ``low_classifier`` to ``low_classifier`` and ``high_classifier`` to ``conv_seg``.
    Dropout (``dropout_ratio``, mmseg's default 0.1; torchvision has none) is applied
    by ``cls_seg`` to the high path only, as BaseDecodeHead does.

    Args:
        in_channels (Sequence[int]): ``(low_channels, high_channels)``.
        in_index (Sequence[int]): Indices of the low and high features in the
            backbone's outputs. Default: (0, 1).
        channels (int): Filters of the 1x1 branch and the gate (the paper's 128).
        pool_kernel (int | tuple[int, int]): Kernel of the gate's average pool.
            Default: (49, 49).
        pool_stride (int | tuple[int, int]): Its stride. Default: (16, 20).
        global_pool (bool): Global average pooling instead. Default: False.
        norm_cfg (dict): Norm of the 1x1 branch. Default: BN.
        **kwargs: See mmseg's ``BaseDecodeHead`` (``num_classes``, ``dropout_ratio``,
            ``loss_decode``, ``align_corners``, ...). ``input_transform`` can only be
            ``'multiple_select'``. ``loss_decode`` (and ``sampler``) are built in
            mmseg's scope whatever the default scope is, so the bare
            ``'CrossEntropyLoss'`` is mmseg's; prefix other scopes' names.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 channels: int = 128,
                 *,
                 in_index: Sequence[int] = (0, 1),
                 pool_kernel: Union[int, Tuple[int, int]] = (49, 49),
                 pool_stride: Union[int, Tuple[int, int]] = (16, 20),
                 global_pool: bool = False,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 input_transform: str = 'multiple_select',
                 **kwargs):
        if input_transform != 'multiple_select':
            raise ValueError("LRASPPHead takes input_transform='multiple_select' only, "
                             f'got {input_transform!r}')
        if (not isinstance(in_channels, (tuple, list)) or len(in_channels) != 2
                or not all(isinstance(c, int) and c > 0 for c in in_channels)):
            raise ValueError('in_channels must be (low_channels, high_channels), two '
                             f'positive ints, got {in_channels!r}')
        if (not isinstance(in_index, (tuple, list)) or len(in_index) != 2
                or not all(isinstance(i, int) for i in in_index)):
            raise ValueError('in_index must be (low_index, high_index), two ints, '
                             f'got {in_index!r}')
        if not isinstance(channels, int) or channels <= 0:
            raise ValueError(f'channels must be a positive int, got {channels!r}')
        self.pool_kernel = _pair(pool_kernel, 'pool_kernel')
        self.pool_stride = _pair(pool_stride, 'pool_stride')
        self.global_pool = bool(global_pool)
        # BaseDecodeHead builds ``loss_decode`` with mmseg's registry under the current
        # default scope: in ours (or mmdet's) a bare 'CrossEntropyLoss' is missing (or
        # mmdet's, without ``loss_name``). Build it as mmseg means it.
        with DefaultScope.overwrite_default_scope('mmseg'):
            super().__init__(
                tuple(in_channels),
                channels,
                in_index=tuple(in_index),
                input_transform=input_transform,
                norm_cfg=norm_cfg,
                **kwargs)
        low_channels, high_channels = self.in_channels
        self.cbr = ConvModule(
            high_channels,
            channels,
            1,
            bias=False,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)
        self.scale_conv = nn.Conv2d(high_channels, channels, 1, bias=False)
        self.low_classifier = nn.Conv2d(low_channels, self.out_channels, 1)

    def gate(self, high: torch.Tensor) -> torch.Tensor:
        """The sigmoid gate at ``high``'s size (1x1 with ``global_pool=True``)."""
        if self.global_pool:
            return torch.sigmoid(self.scale_conv(F.adaptive_avg_pool2d(high, 1)))
        size = tuple(high.shape[2:])
        if size[0] < self.pool_kernel[0] or size[1] < self.pool_kernel[1]:
            raise ValueError(
                f'LRASPPHead: the high-level feature map is {size[0]}x{size[1]}, '
                f'smaller than pool_kernel {self.pool_kernel[0]}x{self.pool_kernel[1]}; '
                'use global_pool=True (or a smaller pool_kernel) for such inputs')
        pooled = F.avg_pool2d(high, self.pool_kernel, self.pool_stride)
        scale = torch.sigmoid(self.scale_conv(pooled))
        return resize(scale, size=size, mode='bilinear',
                      align_corners=self.align_corners)

    def forward(self, inputs):
        """Logits at the low-level feature's size (output stride 8)."""
        low, high = self._transform_inputs(inputs)
        x = self.cbr(high) * self.gate(high)
        x = resize(x, size=low.shape[2:], mode='bilinear',
                   align_corners=self.align_corners)
        return self.cls_seg(x) + self.low_classifier(low)
