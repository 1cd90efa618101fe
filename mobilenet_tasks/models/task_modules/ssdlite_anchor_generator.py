"""SSDLite default boxes as the TF Object Detection API and torchvision define them."""
import math
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

    Args:
        input_size (int or tuple[int, int]): The (H, W) every image is resized to.
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

    def __init__(self,
                 input_size: Union[int, Tuple[int, int]] = 320,
                 num_levels: int = 6,
                 min_ratio: float = 0.2,
                 max_ratio: float = 0.95,
                 aspect_ratios: Sequence[float] = (2, 3),
                 clip: bool = True,
                 reduce_lowest_level: bool = False):
        if isinstance(input_size, int):
            input_size = (input_size, input_size)
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
                                 dtype=torch.float32, device='cuda') -> Tensor:
        """Anchors (x1, y1, x2, y2) of one level: locations row-major, anchors inner."""
        feat_h, feat_w = featmap_size
        in_h, in_w = self.input_size
        cy = (torch.arange(feat_h, dtype=torch.float64) + 0.5) / feat_h * in_h
        cx = (torch.arange(feat_w, dtype=torch.float64) + 0.5) / feat_w * in_w
        cy, cx = torch.meshgrid(cy, cx, indexing='ij')
        centers = torch.stack([cx.reshape(-1), cy.reshape(-1)], -1)[:, None, :]
        half = self.wh_pairs[level_idx] * torch.tensor([in_w, in_h],
                                                       dtype=torch.float64) / 2
        anchors = torch.cat([centers - half, centers + half], -1).reshape(-1, 4)
        return anchors.to(dtype=dtype, device=device)

    def grid_priors(self, featmap_sizes, dtype=torch.float32,
                    device='cuda') -> List[Tensor]:
        """Anchors of every level (mmdet's prior-generator interface)."""
        if len(featmap_sizes) != self.num_levels:
            raise ValueError(f'{len(featmap_sizes)} feature maps given, the anchor '
                             f'generator has {self.num_levels} levels')
        return [
            self.single_level_grid_priors(size, i, dtype, device)
            for i, size in enumerate(featmap_sizes)
        ]

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
