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
from mobilenet_tasks.testing import load_tool, randomize_

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
TOL = 1e-4


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
        report = compare_with_onnxruntime(DEMO, None, out, model=model, seed=seed)
        print(seed, report)
        n = report['num_detections']
        assert n[0] == n[1] > 10  # real detections, the same number
        assert report['labels_equal'] and not report['tied_scores']
        assert report['rel_diff'] < TOL  # boxes in pixels and scores


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
        report = compare_with_onnxruntime(DEMO, None, out, model=model)
        print(change, report)
        n = report['num_detections']
        assert n[0] == n[1] and report['labels_equal'], report
        assert report['rel_diff'] < TOL
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
    report = compare_with_onnxruntime(config, None, out, model=model)
    print(report)
    assert report['num_detections'][0] == report['num_detections'][1] > 50
    assert report['labels_equal'] and report['rel_diff'] < TOL


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
    report = compare_with_onnxruntime(DEMO, None, out, model=model)
    assert report['logit_scale'] > 0.1 and report['rel_diff'] < TOL, report


def test_detection_cannot_be_dynamic(tmp_path):
    model, cfg, meta = load_model(DEMO)
    with pytest.raises(ValueError, match='one input size'):
        export_loaded(model, cfg, meta, DEMO, tmp_path / 'd.onnx', (160, 160),
                      dynamic=True)
    assert not (tmp_path / 'd.onnx').exists()


def test_other_heads_are_refused():
    from mobilenet_tasks.deployment.onnx_export import DetectorPostprocessed
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
