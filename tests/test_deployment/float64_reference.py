"""Float64 references for the deployment tests (not a test module).

The exported graphs run in float32 (onnxruntime); the PyTorch model they are compared
with runs in float32 too, and a float64 copy of it gives the exact values, so that each
tolerance is ``mobilenet_tasks.testing.float32_tolerance(torch_fp32, torch_fp64)``: the
bound on another float32 computation of the same function (see that module's
docstring). For detectors that copy runs mmdet's own post-processing in float64; only
mmcv's CPU NMS is float32-only, see :func:`float64_nms`.
"""
import contextlib
import sys
from unittest import mock

import numpy as np
import torch

from mobilenet_tasks.deployment.onnx_export import SegmentorLogits
from mobilenet_tasks.deployment.parity import _match_detections
from mobilenet_tasks.testing import float32_tolerance, float64_copy


@torch.no_grad()
def segmentor_logits(model, x: torch.Tensor):
    """``(float32 logits, float64 logits)`` of the exported function
    (:class:`SegmentorLogits`) on the float32 input ``x``."""
    ref32 = SegmentorLogits(model).eval()(x)
    ref64 = SegmentorLogits(float64_copy(model)).eval()(x.double())
    return ref32, ref64


@contextlib.contextmanager
def float64_nms():
    """Let mmdet's post-processing run on float64 boxes and scores.

    mmcv 2.1's CPU NMS reads its inputs as float32 (``nms_cpu`` takes
    ``data_ptr<float>``) and raises on float64. Here float64 inputs are suppressed by
    that same NMS run on their float32 roundings (it only decides which boxes
    survive: the same decisions unless an IoU or a score order is within a float32
    rounding of a tie, which the randomized test models do not give), and the values
    kept are the float64 ones. float32 inputs go to mmcv's NMS unchanged.
    """
    import mmcv.ops  # noqa: F401 (imports mmcv.ops.nms)
    module = sys.modules['mmcv.ops.nms']
    original = module.nms

    def nms(boxes, scores, iou_threshold, offset=0, score_threshold=0, max_num=-1):
        if not (isinstance(boxes, torch.Tensor) and boxes.dtype == torch.float64):
            return original(boxes, scores, iou_threshold, offset, score_threshold,
                            max_num)
        _, inds = original(boxes.float(), scores.float(), iou_threshold, offset,
                           score_threshold, max_num)
        return torch.cat([boxes[inds], scores[inds, None]], 1), inds

    # mmcv's batched_nms finds it by name (eval('nms')) in its module
    with mock.patch.object(module, 'nms', nms):
        yield


@torch.no_grad()
def head_outputs(model, x: torch.Tensor):
    """``(float32, float64)`` raw head outputs (``cls_score_*``, then ``bbox_pred_*``,
    the ``nms=False`` graph's outputs) of a detector on the float32 input ``x``."""
    outputs = []
    for net, inputs in ((model, x), (float64_copy(model), x.double())):
        cls_scores, bbox_preds = net._forward(inputs)
        outputs.append([t.numpy() for t in list(cls_scores) + list(bbox_preds)])
    return outputs


@torch.no_grad()
def detector_detections(model, x: torch.Tensor):
    """``(float32, float64)`` detections ``[boxes, scores, labels]`` (numpy) of mmdet's
    ``predict_by_feat`` on the detector's head outputs for the one image ``x``, in
    input pixels (no rescale): what ``compare_with_onnxruntime`` compares the graph
    with, and its exact values."""
    h, w = x.shape[2:]
    metas = [dict(img_shape=(h, w), scale_factor=(1.0, 1.0))]
    out = []
    with float64_nms():
        for net, inputs in ((model, x), (float64_copy(model), x.double())):
            cls_scores, bbox_preds = net._forward(inputs)
            res = net.bbox_head.predict_by_feat(cls_scores, bbox_preds,
                                                batch_img_metas=metas, rescale=False)[0]
            out.append([res.bboxes.numpy(), res.scores.numpy(), res.labels.numpy()])
    return out


def pair_up(ref, got):
    """``got`` (``[boxes, scores, labels]``) put in ``ref``'s order: each detection
    takes the unused one of the same label with the closest box and score. Asserts
    that the labels pair up one to one."""
    assert len(ref[1]) == len(got[1]), (len(ref[1]), len(got[1]))
    order = _match_detections(ref, got, score_tol=np.inf)
    assert order is not None, 'the labels of the detections differ'
    return [np.asarray(g)[order] for g in got]


def detection_tolerances(ref32, ref64):
    """``(box tolerance in pixels, score tolerance)`` for another float32 computation
    of the detections ``ref32`` whose exact values are ``ref64``.

    ``float32_tolerance`` of the boxes and of the scores separately: boxes are up to
    hundreds of pixels and scores at most 1, so one bound for both would let the
    scores be off by the boxes' rounding.
    """
    ref64 = pair_up(ref32, ref64)
    return (float32_tolerance(ref32[0], ref64[0]),
            float32_tolerance(ref32[1], ref64[1]))


def assert_same_detections(ref, got, box_tol: float, score_tol: float,
                           what: str = ''):
    """The same detections, each box within ``box_tol`` pixels and each score within
    ``score_tol``, in any order among scores ``score_tol`` apart. Returns the max
    box and score differences."""
    assert len(ref[1]) == len(got[1]) > 0, (what, len(ref[1]), len(got[1]))
    order = _match_detections(ref, got, score_tol=score_tol)
    assert order is not None, (
        f'{what}: the detections do not pair up with equal labels and scores within '
        f'{score_tol:.3g}')
    box_diff = float(np.abs(np.asarray(got[0])[order] - ref[0]).max())
    score_diff = float(np.abs(np.asarray(got[1])[order] - ref[1]).max())
    assert box_diff <= box_tol, (
        f'{what}: boxes differ by {box_diff:.3g} > {box_tol:.3g}')
    assert score_diff <= score_tol, (what, score_diff, score_tol)
    return box_diff, score_diff
