"""The detector's graphs for ONNX export: mmdet's post-processing written for tracing
(:class:`DetectorPostprocessed`, ``nms=True``) and the raw head outputs
(:class:`DetectorRawOutputs`, ``nms=False``). The file format is described in
:mod:`mobilenet_tasks.deployment.onnx_export`.
"""
from typing import Tuple

import torch
import torch.nn as nn


class DetectorPostprocessed(nn.Module):
    """An mmdet dense detector's ``predict`` (without the rescale to the original
    image) written for tracing to standard ONNX operators, for one image.

    mmdet's ``predict_by_feat`` cannot be traced as it is: it filters by score before
    taking the ``nms_pre`` best, with shapes that depend on the data, and calls mmcv's
    NMS, a custom op. Here the same steps are written so that the shapes known at
    export time are constants (the anchors, ``min(nms_pre, anchors x classes)`` for the
    per-level top-k) and the rest maps to ``TopK``, ``NonZero``/``Gather`` and one
    ``NonMaxSuppression`` (torchvision's ``batched_nms``, which under tracing offsets
    the boxes per class, the same trick as mmcv's ``batched_nms``). The per-level
    selection (the best ``nms_pre`` above ``score_thr``) is the same set as mmdet's
    ``filter_scores_and_topk`` (filter then take the best = take the best then
    filter). Boxes are decoded for all anchors (mmdet decodes only the kept ones;
    decoding is per anchor, so the kept boxes are the same numbers). The anchors are
    those of ``input_shape`` (``SSDLiteHead.priors_for``), as the head's own predict
    would place them for an input of that size.

    Only softmax heads with a ``DeltaXYWHBBoxCoder``-like ``bbox_coder.decode`` and no
    score factors (SSD / SSDLite) are supported; others raise ``ValueError``.
    """

    def __init__(self, detector: nn.Module, input_shape: Tuple[int, int]):
        super().__init__()
        head = detector.bbox_head
        if getattr(head, 'use_sigmoid_cls', False) or not hasattr(head,
                                                                  'prior_generator'):
            raise ValueError(
                f'{type(head).__name__}: only softmax anchor heads (SSD / SSDLite) '
                'can be exported with the post-processing in the graph; export with '
                'nms=False (--no-nms) for the raw head outputs')
        cfg = head.test_cfg
        nms_cfg = dict(cfg.get('nms') or {})
        if str(nms_cfg.get('type', 'nms')) != 'nms':
            raise ValueError(f'test_cfg.nms.type={nms_cfg.get("type")!r}: only plain '
                             "'nms' maps to ONNX NonMaxSuppression; export with "
                             'nms=False (--no-nms)')
        self.detector = detector
        self.input_shape = tuple(input_shape)
        self.num_classes = int(head.num_classes)
        self.score_thr = float(cfg.get('score_thr', 0.0))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.iou_threshold = float(nms_cfg.get('iou_threshold', 0.5))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.max_per_img = int(cfg.get('max_per_img', -1))
        with torch.no_grad():
            cls_scores, _ = detector._forward(torch.zeros(1, 3, *self.input_shape))
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        if hasattr(head, 'priors_for'):  # SSDLiteHead: the anchors of the traced size
            priors = head.priors_for(sizes, self.input_shape, device='cpu')
        else:
            priors = head.prior_generator.grid_priors(sizes, device='cpu')
        self.level_counts = [int(p.shape[0]) for p in priors]
        self.register_buffer('priors', torch.cat(priors), persistent=False)

    def post_settings(self) -> dict:
        return dict(score_thr=self.score_thr, nms_pre=self.nms_pre,
                    iou_threshold=self.iou_threshold,
                    min_bbox_size=self.min_bbox_size, max_per_img=self.max_per_img)

    def _decode(self, coder, deltas: torch.Tensor) -> torch.Tensor:
        """``coder.decode(priors, deltas, max_shape=input_shape)``, by mmdet's
        ``delta2bbox`` directly: under ONNX export mmdet 3.3's
        ``DeltaXYWHBBoxCoder.decode`` switches to ``onnx_delta2bbox``, which imports
        the removed ``mmdet.core`` (ModuleNotFoundError)."""
        from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
        from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import \
            delta2bbox
        if type(coder) is not DeltaXYWHBBoxCoder:
            raise ValueError(f'{type(coder).__name__}: only DeltaXYWHBBoxCoder is '
                             'decoded in the graph; export with nms=False (--no-nms)')
        return delta2bbox(self.priors, deltas, coder.means, coder.stds,
                          self.input_shape, 16 / 1000, coder.clip_border,
                          coder.add_ctr_clamp, coder.ctr_clamp)

    def forward(self, inputs: torch.Tensor):
        from torchvision.ops import batched_nms
        head = self.detector.bbox_head
        cls_scores, bbox_preds = self.detector._forward(inputs)
        num_classes = self.num_classes
        deltas = torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])
        boxes = self._decode(head.bbox_coder, deltas)
        all_scores, all_labels, all_anchors = [], [], []
        start = 0
        for cls_score, count in zip(cls_scores, self.level_counts):
            scores = cls_score[0].permute(1, 2, 0).reshape(-1, num_classes + 1)
            scores = scores.softmax(-1)[:, :num_classes].reshape(-1)
            k = scores.numel() if self.nms_pre <= 0 else min(self.nms_pre,
                                                             scores.numel())
            scores, idx = scores.topk(k)
            keep = scores > self.score_thr
            scores, idx = scores[keep], idx[keep]
            all_scores.append(scores)
            all_labels.append(idx % num_classes)
            all_anchors.append(torch.div(idx, num_classes, rounding_mode='floor')
                               + start)
            start += count
        scores = torch.cat(all_scores)
        labels = torch.cat(all_labels)
        boxes = boxes[torch.cat(all_anchors)]
        if self.min_bbox_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            keep = (wh[:, 0] > self.min_bbox_size) & (wh[:, 1] > self.min_bbox_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.iou_threshold)
        if self.max_per_img > 0:
            keep = keep[:self.max_per_img]
        return boxes[keep], scores[keep], labels[keep]


class DetectorRawOutputs(nn.Module):
    """The detector's network (backbone, neck, head), its raw per-level outputs as a
    flat tuple ``(cls_score_0, ..., bbox_pred_0, ...)``."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, inputs: torch.Tensor):
        cls_scores, bbox_preds = self.detector._forward(inputs)
        return tuple(cls_scores) + tuple(bbox_preds)
