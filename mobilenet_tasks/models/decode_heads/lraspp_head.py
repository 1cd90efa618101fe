"""The MobileNetV3 paper's Lite R-ASPP segmentation head, as an mmseg decode head."""
from typing import Optional, Sequence, Tuple, Union

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


def crop_pool_kernel(crop_size: Tuple[int, int], output_stride: int) -> Tuple[int, int]:
    """TF DeepLab's image-pooling kernel for a training crop: ``scale_dimension(crop,
    1 / output_stride)`` = ``int((crop - 1) / OS + 1)`` = ``ceil(crop / OS)`` per side,
    the size of the crop's feature map at that output stride (SAME padding)."""
    return tuple((int(c) - 1) // int(output_stride) + 1 for c in crop_size)


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

    Why ``pool_kernel='crop'``: 49x49 is not a constant of the design but the whole
    high-level map of the paper's 769x769 training crops at output stride 16; at
    mmseg's usual 512x1024 crops that map is 32x64 and a 49x49 kernel does not fit.
    TF DeepLab (``model.py``, the image-pooling branch that the squeeze-and-excitation
    gate reuses) derives the kernel from the training crop, ``pool = scale_dimension(
    image_pooling_crop_size or crop_size, 1 / output_stride)`` = ``ceil(crop / OS)``
    per side, so that training pools each crop's whole map and inference on larger
    images slides that window; its stride is a separate flag
    (``image_pooling_stride``), not derived. ``pool_kernel='crop'`` with
    ``crop_size`` (the training crop, (H, W)) and ``output_stride`` (the backbone's)
    does the same: ``(769, 769)`` at 16 gives the paper's (49, 49), ``(512, 1024)``
    gives (32, 64); ``pool_stride`` is kept as given. The first training step checks
    that the batch's map is that window (a ``crop_size`` that is not the pipeline's
    crop, or a wrong ``output_stride``, stops it with what to set).

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
        pool_kernel (int | tuple[int, int] | str): Kernel of the gate's average pool,
            or ``'crop'``: derived from ``crop_size`` and ``output_stride``.
            Default: (49, 49).
        pool_stride (int | tuple[int, int]): Its stride. Default: (16, 20).
        crop_size (int | tuple[int, int], optional): The training crop (H, W); only
            with ``pool_kernel='crop'``, which needs it.
        output_stride (int, optional): Output stride of the high-level feature (the
            backbone's ``output_stride``); only with ``pool_kernel='crop'``, which
            needs it.
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
                 pool_kernel: Union[int, Tuple[int, int], str] = (49, 49),
                 pool_stride: Union[int, Tuple[int, int]] = (16, 20),
                 crop_size: Optional[Union[int, Tuple[int, int]]] = None,
                 output_stride: Optional[int] = None,
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
        self.global_pool = bool(global_pool)
        self.crop_size, self.output_stride = None, None
        if isinstance(pool_kernel, str):
            if pool_kernel != 'crop':
                raise ValueError("pool_kernel must be a positive int, a pair of them "
                                 f"or 'crop', got {pool_kernel!r}")
            if self.global_pool:
                raise ValueError("global_pool=True pools globally: drop pool_kernel="
                                 "'crop' (or global_pool)")
            if crop_size is None or output_stride is None:
                raise ValueError("pool_kernel='crop' derives the kernel from the "
                                 'training crop as TF DeepLab does, ceil(crop / '
                                 'output_stride) per side: give crop_size=(H, W), the '
                                 "pipeline's crop, and output_stride, the backbone's "
                                 f'(got crop_size={crop_size!r}, '
                                 f'output_stride={output_stride!r})')
            self.crop_size = _pair(crop_size, 'crop_size')
            if (not isinstance(output_stride, int) or isinstance(output_stride, bool)
                    or output_stride <= 0):
                raise ValueError('output_stride must be a positive int, got '
                                 f'{output_stride!r}')
            self.output_stride = output_stride
            pool_kernel = crop_pool_kernel(self.crop_size, self.output_stride)
        elif crop_size is not None or output_stride is not None:
            raise ValueError("crop_size and output_stride are read only with "
                             "pool_kernel='crop'; with an explicit pool_kernel "
                             f'({pool_kernel!r}) drop them')
        self.pool_kernel = _pair(pool_kernel, 'pool_kernel')
        self.pool_stride = _pair(pool_stride, 'pool_stride')
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
                'use global_pool=True for such inputs, or a smaller pool_kernel '
                "(pool_kernel='crop' with crop_size=<the training crop> and "
                "output_stride=<the backbone's> derives it as TF DeepLab does)")
        pooled = F.avg_pool2d(high, self.pool_kernel, self.pool_stride)
        scale = torch.sigmoid(self.scale_conv(pooled))
        return resize(scale, size=size, mode='bilinear',
                      align_corners=self.align_corners)

    def loss(self, inputs, batch_data_samples, train_cfg) -> dict:
        """mmseg's loss; with ``pool_kernel='crop'``, first checks that the batch's
        high-level map is the derived window (the crop the head was told of)."""
        if self.crop_size is not None:
            size = tuple(self._transform_inputs(inputs)[1].shape[2:])
            if size != self.pool_kernel:
                shape = (batch_data_samples[0].metainfo.get('pad_shape')
                         if batch_data_samples else None)
                seen = f' (input {shape[0]}x{shape[1]})' if shape else ''
                raise ValueError(
                    f"LRASPPHead: pool_kernel='crop' gives a "
                    f'{self.pool_kernel[0]}x{self.pool_kernel[1]} window (crop_size='
                    f'{self.crop_size} at output_stride={self.output_stride}: '
                    f'ceil(crop / output_stride), as TF DeepLab), but this training '
                    f"batch's high-level feature map is {size[0]}x{size[1]}{seen}: the "
                    "window must be the training crop's whole map. Set "
                    'decode_head.crop_size to the crop the training pipeline makes '
                    "(RandomCrop's crop_size, data_preprocessor.size) and "
                    "decode_head.output_stride to the backbone's output_stride")
        return super().loss(inputs, batch_data_samples, train_cfg)

    def forward(self, inputs):
        """Logits at the low-level feature's size (output stride 8)."""
        low, high = self._transform_inputs(inputs)
        x = self.cbr(high) * self.gate(high)
        x = resize(x, size=low.shape[2:], mode='bilinear',
                   align_corners=self.align_corners)
        return self.cls_seg(x) + self.low_classifier(low)
