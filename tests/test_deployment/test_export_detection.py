"""ONNX export of SSDLite detectors: decoding and NMS in the graph with standard
operators, the same detections as mmdet's predict; the raw-output mode."""
import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mobilenet_tasks.deployment import (compare_with_onnxruntime, default_input_shape,
                                        export_loaded, load_model, read_metadata)
from mobilenet_tasks.deployment.onnx_export import _walk_nodes
from mobilenet_tasks.backends.onnxruntime import cpu_session
from mobilenet_tasks.testing import (float32_tolerance, load_tool, max_abs_diff,
                                     randomize_)

from float64_reference import (assert_same_detections,  # noqa: I100
                               detection_tolerances, detector_detections,
                               head_outputs)

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / 'configs/ssdlite_v3_large_demo.py')


def _randomized(config, seed=0):
    """Random weights and BN statistics; the head's last convolutions scaled down so
    that the class logits are a few units (He-normal ones saturate the softmax, and
    scores of exactly 1.0 tie)."""
    model, cfg, meta = load_model(config)
    assert randomize_(model, torch.Generator().manual_seed(seed)) > 0
    head = model.bbox_head
    with torch.no_grad():
        for branch in list(head.cls_convs) + list(head.reg_convs):
            last = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last.weight.mul_(0.2)
    return model, cfg, meta


def _ops(path):
    return {n.op_type for n in _walk_nodes(onnx.load(path).graph)}


def _input(onnx_file, seed):
    """``compare_with_onnxruntime``'s input for ``seed`` (standard normal)."""
    h, w = read_metadata(onnx_file)['input_size']
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _check_detections(model, onnx_file, seed=0):
    """The graph's detections against mmdet's ``predict_by_feat`` (float32) on the
    same head outputs, by the library's check and here; returns its report.

    Bounds: ``float32_tolerance`` of mmdet's float32 boxes and scores against the
    same post-processing in float64 (see ``float64_reference``), boxes and scores
    each their own: onnxruntime's network and post-processing are another float32
    rounding of the same function (see ``test_export_onnx._check_logits``).
    """
    report = compare_with_onnxruntime(DEMO, None, onnx_file, model=model, seed=seed)
    x = _input(onnx_file, seed)
    ref32, ref64 = detector_detections(model, x)
    got = cpu_session(onnx_file).run(None, {'input': x.numpy()})
    assert report['num_detections'] == (len(ref32[1]), len(got[1])), report
    if len(ref32[1]) == 0:
        return report
    box_tol, score_tol = detection_tolerances(ref32, ref64)
    box_diff, score_diff = assert_same_detections(ref32, got, box_tol, score_tol,
                                                  f'seed {seed}')
    print(f'seed {seed}: {len(got[1])} detections, boxes off by {box_diff:.3g} px '
          f'(tolerance {box_tol:.3g}), scores by {score_diff:.3g} ({score_tol:.3g})')
    assert report['labels_equal'], report
    # spread scores, not saturated ones (an exact float32 tie of two of them can
    # happen: 300 scores in (0.09, 0.33) are 1e-6 apart at the closest)
    assert np.unique(ref32[1]).size > 0.9 * len(ref32[1])
    assert report['max_abs_diff'] <= max(box_tol, score_tol), report
    return report


def test_export_with_nms_matches_mmdet(tmp_path):
    model, cfg, meta = _randomized(DEMO)
    assert default_input_shape(cfg) == (160, 160)
    out = export_loaded(model, cfg, meta, DEMO, tmp_path / 'det.onnx', (160, 160))
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert {n.domain for n in _walk_nodes(proto.graph)} <= {'', 'ai.onnx'}
    assert {'NonMaxSuppression', 'TopK', 'Softmax', 'Conv'} <= _ops(out)
    assert [o.name for o in proto.graph.output] == ['boxes', 'scores', 'labels']
    meta_props = read_metadata(proto)
    assert meta_props['task'] == 'detection' and meta_props['nms'] is True
    assert meta_props['test_cfg']['score_thr'] == 0.05
    assert meta_props['input_size'] == [160, 160]
    assert meta_props['bgr_to_rgb'] is True  # DetDataPreprocessor(bgr_to_rgb=True)
    assert meta_props['mean'] == [127.5] * 3 and meta_props['std'] == [127.5] * 3
    assert len(meta_props['class_names']) == model.bbox_head.num_classes

    for seed in (0, 1, 2):
        report = _check_detections(model, out, seed)
        assert report['num_detections'][0] > 10  # real detections


def test_post_processing_settings_are_mmdets(tmp_path):
    """nms_pre cutting each level, a high score_thr, max_per_img, and no detection at
    all: the graph follows test_cfg as mmdet's predict_by_feat does."""
    model, cfg, meta = _randomized(DEMO, seed=3)
    head = model.bbox_head
    base = copy.deepcopy(head.test_cfg)
    cases = [dict(nms_pre=20, score_thr=0.02, max_per_img=100),
             dict(nms_pre=1000, score_thr=0.3, max_per_img=7,
                  nms=dict(type='nms', iou_threshold=0.3)),
             dict(score_thr=0.99999)]
    for i, change in enumerate(cases):
        head.test_cfg = copy.deepcopy(base)
        head.test_cfg.update(change)
        out = export_loaded(model, cfg, meta, DEMO, tmp_path / f'{i}.onnx', (160, 160))
        report = _check_detections(model, out)
        n = report['num_detections']
        assert n[0] == n[1] and report['labels_equal'], report
        if 'max_per_img' in change:
            assert 0 < n[0] <= change['max_per_img']
        else:
            assert n[0] == 0  # an empty result runs through the graph too


def test_coco_config_at_320(tmp_path):
    """Table 6's SSDLite V3-Large reduced (80 classes, 320x320, 300 boxes)."""
    config = str(ROOT / 'configs/ssdlite_v3_large_reduced_coco.py')
    model, cfg, meta = _randomized(config)
    out = export_loaded(model, cfg, meta, config, tmp_path / 'coco.onnx',
                        default_input_shape(cfg))
    report = _check_detections(model, out)
    assert report['num_detections'][0] > 50


def test_raw_outputs(tmp_path):
    model, cfg, meta = _randomized(DEMO)
    out = export_loaded(model, cfg, meta, DEMO, tmp_path / 'raw.onnx', (160, 160),
                        nms=False)
    names = [o.name for o in onnx.load(out).graph.output]
    levels = len(model.bbox_head.cls_convs)
    assert names == ([f'cls_score_{i}' for i in range(levels)]
                     + [f'bbox_pred_{i}' for i in range(levels)])
    assert 'NonMaxSuppression' not in _ops(out)
    meta_props = read_metadata(out)
    assert meta_props['nms'] is False and meta_props['num_levels'] == levels
    report = compare_with_onnxruntime(DEMO, None, out, model=model, seed=0)
    x = _input(out, 0)
    ref32, ref64 = head_outputs(model, x)
    got = cpu_session(out).run(names, {'input': x.numpy()})
    # the network alone: the bound of test_export_onnx._check_logits
    tol = float32_tolerance(ref32, ref64)
    diff = max(max_abs_diff(g, r) for g, r in zip(got, ref32))
    print(f'raw outputs: scale {report["logit_scale"]:.3g}, diff {diff:.3g} '
          f'(tolerance {tol:.3g})')
    assert report['logit_scale'] > 1.0 and diff <= tol
    assert report['max_abs_diff'] <= tol, report


def test_detection_cannot_be_dynamic(tmp_path):
    model, cfg, meta = load_model(DEMO)
    with pytest.raises(ValueError, match='one input size'):
        export_loaded(model, cfg, meta, DEMO, tmp_path / 'd.onnx', (160, 160),
                      dynamic=True)
    assert not (tmp_path / 'd.onnx').exists()


def test_other_heads_are_refused():
    from mobilenet_tasks.deployment.detection_graph import DetectorPostprocessed
    model, _, _ = load_model(DEMO)
    model.bbox_head.test_cfg['nms'] = dict(type='soft_nms', iou_threshold=0.5)
    with pytest.raises(ValueError, match='--no-nms'):
        DetectorPostprocessed(model, (160, 160))


def test_cli(tmp_path, capsys):
    tool = load_tool('tools/deployment/export_onnx.py')
    model, _, _ = _randomized(DEMO)
    ckpt = tmp_path / 'w.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'det.onnx'
    assert tool.main([DEMO, str(ckpt), str(out)]) == 0
    text = capsys.readouterr().out
    assert 'input 1x3x160x160' in text and 'labels equal' in text and ': OK' in text
    assert tool.main([DEMO, str(ckpt), str(tmp_path / 'raw.onnx'), '--no-nms']) == 0
    assert 'max abs diff of head outputs' in capsys.readouterr().out
    assert tool.main([DEMO, 'none', str(tmp_path / 'x.onnx'), '--dynamic']) == 1
    assert 'one input size' in capsys.readouterr().err
    # the session runs what was written
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    boxes, scores, labels = session.run(None, {'input': np.zeros((1, 3, 160, 160),
                                                                 np.float32)})
    assert boxes.shape[1:] == (4, ) and labels.dtype == np.int64
