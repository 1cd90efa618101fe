"""Parity of an exported file with the PyTorch model it came from: both run on the same
random preprocessed input, outputs compared (``tools/deployment/export_onnx.py`` prints
the report).
"""
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from mobilenet_tasks.backends import open_backend, read_metadata
from mobilenet_tasks.utils.task import task_of_model

from .onnx_export import SegmentorLogits, _check_shape, load_model


def compare_with_backend(config, checkpoint: Optional[str], onnx_path,
                             input_shape: Optional[Sequence[int]] = None,
                             batch_size: int = 1, seed: int = 0,
                             model: Optional[nn.Module] = None,
                             backend: Optional[str] = None) -> dict:
    """Run PyTorch and the file's runtime (the one its suffix names: onnxruntime for
    ``.onnx``, ExecuTorch for ``.pte``, OpenVINO for ``.xml``; ``backend`` to choose)
    on the same random preprocessed input and compare their outputs.

    Segmentation: the logits. Detection with NMS in the graph: the detections against
    mmdet's own ``predict_by_feat`` (no rescale) on the same head outputs; without
    NMS: the raw head outputs.

    Args:
        config, checkpoint: What was exported (ignored if ``model`` is given).
        onnx_path (str): The exported file.
        input_shape (tuple, optional): ``(H, W)``; default the exported size.
        batch_size (int): Images in the input (1 unless exported ``dynamic``).
        seed (int): Seed of the standard normal input (what ``(x - mean) / std`` of
            an image roughly gives).
        model (nn.Module, optional): An already loaded model in eval mode.

    Returns:
        dict: ``max_abs_diff`` (logits; detection: box pixels and scores),
        ``logit_scale`` (max abs PyTorch value), ``rel_diff`` (their ratio, the scale
        floored at 1; ``inf`` if detections differ in number or labels), ``shape``;
        segmentation: ``argmax_agreement`` (fraction of pixels with the same label);
        detection with NMS: ``num_detections`` (PyTorch, onnxruntime),
        ``labels_equal`` (the detections pair up one to one with equal labels and
        scores within 1e-4, in any order), ``tied_scores`` (PyTorch's scores hold
        ties: then, if the labels differ, only the sorted scores are compared).
    """
    if model is None:
        model, _, _ = load_model(config, checkpoint)
    meta = read_metadata(onnx_path, backend)
    if input_shape is None:
        input_shape = meta['input_size']
    h, w = _check_shape(tuple(input_shape))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, h, w, generator=gen)
    runtime = open_backend(onnx_path, backend)
    names = runtime.output_names
    got = runtime.run(x.numpy())
    reference = _reference_outputs(model, x)
    if task_of_model(model) == 'detection':
        levels = len(reference) // 2
        cls_scores, bbox_preds = reference[:levels], reference[levels:]
        if not meta.get('nms', True):
            ref = [t.numpy() for t in list(cls_scores) + list(bbox_preds)]
            return _compare_arrays(ref, got, names)
        with torch.no_grad():
            results = model.bbox_head.predict_by_feat(
                cls_scores, bbox_preds,
                batch_img_metas=[dict(img_shape=(h, w), scale_factor=(1.0, 1.0))],
                rescale=False)[0]
        ref = [results.bboxes.numpy(), results.scores.numpy(), results.labels.numpy()]
        counts = (len(ref[1]), len(got[1]))
        # detections with scores a rounding error apart may come in either order
        order = _match_detections(ref, got) if counts[0] == counts[1] else None
        same = order is not None
        if same:
            got = [g[order] for g in got]
        # Equal scores (a head at its initial weights gives every class 1/(C+1)) make
        # the top-k and NMS choose among ties arbitrarily: then only the sorted scores
        # can be compared.
        tied = np.unique(ref[1]).size < ref[1].size
        if same:
            report = _compare_arrays(ref[:2], got[:2], names[:2])
        elif tied and counts[0] == counts[1]:
            report = _compare_arrays([np.sort(ref[1])], [np.sort(got[1])], ['scores'])
        else:
            report = dict(max_abs_diff=float('inf'), rel_diff=float('inf'),
                          logit_scale=float(np.abs(ref[0]).max(initial=0.0)))
        report.update(num_detections=counts, labels_equal=same, tied_scores=tied,
                      shape=(counts[0], 4))
        return report
    ref = reference[0].numpy()
    got = got[0]
    if got.shape != ref.shape:
        raise ValueError(f'{runtime.name} gave logits of shape {got.shape}, PyTorch '
                         f'{ref.shape}')
    report = _compare_arrays([ref], [got], names)
    report['argmax_agreement'] = float((got.argmax(1) == ref.argmax(1)).mean())
    return report


def _reference_outputs(model: nn.Module, x: torch.Tensor) -> list:
    """The network's outputs in PyTorch, as the exported graph gives them: the
    segmentation logits, or the raw detection head outputs (classification, then box
    outputs of every level). A QAT model's are its fake-quantized graph's."""
    with torch.no_grad():
        if hasattr(model, 'converted_graph'):  # a QATModel
            return model.eval()(x, mode='tensor')
        if task_of_model(model) == 'detection':
            cls_scores, bbox_preds = model._forward(x)
            return list(cls_scores) + list(bbox_preds)
        return [SegmentorLogits(model).eval()(x)]


def _match_detections(ref: list, got: list, score_tol: float = 1e-4):
    """Indices putting ``got``'s detections in ``ref``'s order, or None.

    Each reference detection takes the unused one of the same label with the closest
    score and box; detections differing only in order (scores within ``score_tol``)
    then line up. None if the labels cannot be paired one to one or a pair's scores
    differ by more than ``score_tol``.
    """
    (rb, rs, rl), (gb, gs, gl) = ref, got
    used = np.zeros(len(gs), bool)
    order = []
    for i in range(len(rs)):
        cand = np.flatnonzero((gl == rl[i]) & ~used
                              & (np.abs(gs - rs[i]) <= score_tol))
        if cand.size == 0:
            return None
        cost = np.abs(gb[cand] - rb[i]).max(1) + np.abs(gs[cand] - rs[i])
        j = int(cand[np.argmin(cost)])
        used[j] = True
        order.append(j)
    return np.asarray(order, dtype=np.int64)


def _compare_arrays(ref: list, got: list, names: list) -> dict:
    for r, g, name in zip(ref, got, names):
        if r.shape != g.shape:
            raise ValueError(f'the runtime gave {name} of shape {g.shape}, PyTorch '
                             f'{r.shape}')
    diff = max(float(np.abs(g - r).max(initial=0.0)) for r, g in zip(ref, got))
    scale = max(float(np.abs(r).max(initial=0.0)) for r in ref)
    return dict(max_abs_diff=diff, logit_scale=scale, rel_diff=diff / max(scale, 1.0),
                shape=tuple(ref[0].shape))


#: The first name of :func:`compare_with_backend` (it compared ONNX files only).
compare_with_onnxruntime = compare_with_backend
