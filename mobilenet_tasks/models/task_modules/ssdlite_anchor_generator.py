"""SSDLite default boxes as the TF Object Detection API and torchvision define them."""
import math
import numbers
from collections import OrderedDict
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor

from mobilenet_tasks.registry import TASK_UTILS


@TASK_UTILS.register_module()
class SSDLiteAnchorGenerator:
    """Default boxes of SSDLite: scales from ``min_ratio`` to ``max_ratio`` of the input.

    Why not mmdet's ``SSDAnchorGenerator``: it takes pixel strides and sizes written for
    one input size (``strides=[16, 32, 64, 107, 160, 320]``, integer strides that place
    centres up to a pixel off the cell centres) and never clips. The paper's detector
    (TF ``multiple_grid_anchor_generator``, torchvision ``DefaultBoxGenerator``) defines
    boxes relative to the image: level ``k`` of ``m`` has scale
    ``s_k = min_ratio + (max_ratio - min_ratio) * k / (m - 1)`` (``s_m = 1``), anchors
    ``s_k`` and ``sqrt(s_k * s_{k+1})`` at aspect ratio 1 plus ``s_k`` at each ratio
    ``r`` and ``1/r``, centred on the cell centres ``(j + 0.5) / f_k``, with widths and
    heights clipped to the image. That is what this class computes, in the order
    torchvision uses, so torchvision's SSDLite weights convert exactly.

    Why the anchors take the input size at each call: boxes relative to the image are
    only right in pixels for the image the network sees. A generator fixed to one
    ``input_size`` gives, on a 128x128 input, the boxes of a 320x320 one: they cover
    the top-left 40% of the image and training goes wrong without a word (a child
    config's ``input_size = 128`` does not reach the base's ``Resize``). So
    ``grid_priors(..., input_size=(H, W))`` computes them for that size (cached per
    size, as TF and torchvision recompute them from the image's shape);
    :class:`~mobilenet_tasks.models.dense_heads.SSDLiteHead` passes the batch's
    ``batch_input_shape``. Without ``input_size`` (mmdet's interface) the configured
    one is used.

    Args:
        input_size (int or tuple[int, int]): The (H, W) the anchors are for when a
            call gives none (the configured input, e.g. for an export's default).
        num_levels (int): Number of feature levels.
        min_ratio (float): Scale of the first level, relative to the input.
        max_ratio (float): Scale of the last level.
        aspect_ratios (Sequence[float]): Ratios besides 1; each adds ``r`` and ``1/r``.
        clip (bool): Clip anchor widths and heights to the image.
        reduce_lowest_level (bool): Only 3 anchors on the first level: scale 0.1 at
            ratio 1 and ``min_ratio`` at ratios 2 and 1/2 (the TF Object Detection
            API's ``reduce_boxes_in_lowest_layer``, on in the paper's SSDLite configs;
            torchvision keeps 6).
    """

    follows_input = True  # SSDLiteHead passes the input size to grid_priors
    CACHE_SIZE = 8  # input sizes whose anchors are kept

    def __init__(self,
                 input_size: Union[int, Tuple[int, int]] = 320,
                 num_levels: int = 6,
                 min_ratio: float = 0.2,
                 max_ratio: float = 0.95,
                 aspect_ratios: Sequence[float] = (2, 3),
                 clip: bool = True,
                 reduce_lowest_level: bool = False):
        input_size = _size_pair(input_size)
        if num_levels < 2:
            raise ValueError(f'num_levels must be at least 2, got {num_levels}')
        if not 0 < min_ratio < max_ratio <= 1:
            raise ValueError('need 0 < min_ratio < max_ratio <= 1, got '
                             f'min_ratio={min_ratio}, max_ratio={max_ratio}')
        self.input_size = tuple(input_size)
        self.min_ratio = min_ratio
        self.max_ratio = max_ratio
        self.aspect_ratios = tuple(aspect_ratios)
        self.clip = clip
        self.reduce_lowest_level = reduce_lowest_level
        self._cache = OrderedDict()  # (input size, feature-map sizes) -> anchors
        scales = [min_ratio + (max_ratio - min_ratio) * k / (num_levels - 1)
                  for k in range(num_levels)] + [1.0]
        self.scales = scales
        self.wh_pairs = []  # relative (w, h) of each level's anchors, torchvision order
        for k in range(num_levels):
            if k == 0 and reduce_lowest_level:
                root = math.sqrt(2)
                pairs = [(0.1, 0.1), (scales[0] * root, scales[0] / root),
                         (scales[0] / root, scales[0] * root)]
                self.wh_pairs.append(torch.tensor(pairs, dtype=torch.float64))
                continue
            pairs = [(scales[k], scales[k]),
                     (math.sqrt(scales[k] * scales[k + 1]), ) * 2]
            for ratio in self.aspect_ratios:
                root = math.sqrt(ratio)
                pairs += [(scales[k] * root, scales[k] / root),
                          (scales[k] / root, scales[k] * root)]
            wh = torch.tensor(pairs, dtype=torch.float64)
            self.wh_pairs.append(wh.clamp(0, 1) if clip else wh)

    @property
    def num_levels(self) -> int:
        return len(self.wh_pairs)

    @property
    def num_base_priors(self) -> List[int]:
        """Anchors per location of each level."""
        return [len(wh) for wh in self.wh_pairs]

    def single_level_grid_priors(self, featmap_size, level_idx: int,
                                 dtype=torch.float32, device='cuda',
                                 input_size=None) -> Tensor:
        """Anchors (x1, y1, x2, y2) of one level: locations row-major, anchors inner,
        in pixels of an ``input_size`` image (default: the configured one)."""
        size = self.input_size if input_size is None else _size_pair(input_size)
        return self._level(featmap_size, level_idx, size).to(dtype=dtype,
                                                            device=device)

    def _level(self, featmap_size, level_idx: int, input_size) -> Tensor:
        """One level's anchors in float64 on the CPU (callers convert them)."""
        feat_h, feat_w = (int(v) for v in featmap_size)
        in_h, in_w = input_size
        cy = (torch.arange(feat_h, dtype=torch.float64) + 0.5) / feat_h * in_h
        cx = (torch.arange(feat_w, dtype=torch.float64) + 0.5) / feat_w * in_w
        cy, cx = torch.meshgrid(cy, cx, indexing='ij')
        centers = torch.stack([cx.reshape(-1), cy.reshape(-1)], -1)[:, None, :]
        half = self.wh_pairs[level_idx] * torch.tensor([in_w, in_h],
                                                       dtype=torch.float64) / 2
        return torch.cat([centers - half, centers + half], -1).reshape(-1, 4)

    def grid_priors(self, featmap_sizes, dtype=torch.float32, device='cuda',
                    input_size=None) -> List[Tensor]:
        """Anchors of every level (mmdet's prior-generator interface), in pixels of an
        ``input_size`` (H, W) image; default: the configured ``input_size``.

        Cached per (input size, feature-map sizes), a few entries: a run sees one size
        or a handful (multi-scale). Each call returns new tensors, so a caller that
        changes them in place cannot change the cache.
        """
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f'{len(featmap_sizes)} feature maps given, the anchor '
                             f'generator has {self.num_levels} levels')
        size = self.input_size if input_size is None else _size_pair(input_size)
        key = (size, tuple((int(h), int(w)) for h, w in featmap_sizes))
        anchors = self._cache.get(key)
        if anchors is None:
            anchors = [self._level(s, i, size) for i, s in enumerate(key[1])]
            self._cache[key] = anchors
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return [a.to(dtype=dtype, device=device, copy=True) for a in anchors]

    def valid_flags(self, featmap_sizes, pad_shape, device='cuda') -> List[Tensor]:
        """Every anchor is valid: SSD trains on all of them (``allowed_border=-1``)."""
        return [
            torch.ones(h * w * n, dtype=torch.bool, device=device)
            for (h, w), n in zip(featmap_sizes, self.num_base_priors)
        ]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(input_size={self.input_size}, '
                f'scales={[round(s, 4) for s in self.scales]}, '
                f'aspect_ratios={self.aspect_ratios}, clip={self.clip}, '
                f'reduce_lowest_level={self.reduce_lowest_level})')


def _size_pair(size) -> Tuple[int, int]:
    """``size`` (an int or (H, W)) as a pair of positive ints, or a ValueError."""
    try:
        pair = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    except TypeError:
        pair = ()
    if (len(pair) != 2 or not all(isinstance(v, numbers.Integral)
                                  and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ValueError(f'input_size must be a positive int or (H, W), got {size!r}')
    return int(pair[0]), int(pair[1])
