"""Exported models run by onnxruntime behind the PyTorch model's interface: the
Inferencer (``weights='x.onnx'``) and ``tools/test.py CONFIG x.onnx`` give what the
PyTorch model gives."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenet_tasks.apis import Inferencer
from mobilenet_tasks.datasets.demo_cityscapes import draw_demo_street
from mobilenet_tasks.datasets.demo_coco import draw_demo_image, make_demo_coco
from mobilenet_tasks.deployment import export_loaded, load_model
from mobilenet_tasks.deployment.onnx_export import _match_detections
from mobilenet_tasks.testing import randomize_

ROOT = Path(__file__).resolve().parents[2]
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')


def _checkpoint_and_model(config, path, seed=0):
    model, cfg, meta = load_model(config)
    randomize_(model, torch.Generator().manual_seed(seed))
    head = getattr(model, 'bbox_head', None)
    if head is not None:  # logits of a few units: no saturated, tied scores
        with torch.no_grad():
            for branch in list(head.cls_convs) + list(head.reg_convs):
                [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)
                 ][-1].weight.mul_(0.2)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model, cfg, meta


@pytest.fixture(scope='module')
def detector(tmp_path_factory):
    """A random detector, its checkpoint and both exports.

    Its config cuts no list (nms_pre, max_per_img): random weights give many boxes
    with scores a rounding error apart at the cut, where PyTorch and onnxruntime
    may keep different ones (trained models do not crowd there).
    """
    tmp = tmp_path_factory.mktemp('det')
    config = tmp / 'det.py'
    config.write_text(f"_base_ = '{DET}'\n"
                      'model = dict(test_cfg=dict(nms_pre=100000, max_per_img=100000))\n')
    ckpt, model, cfg, meta = _checkpoint_and_model(str(config), tmp / 'w.pth')
    nms = export_loaded(model, cfg, meta, config, tmp / 'nms.onnx', (160, 160))
    raw = export_loaded(model, cfg, meta, config, tmp / 'raw.onnx', (160, 160),
                        nms=False)
    return str(config), ckpt, nms, raw


def _images(n=4):
    rng = np.random.default_rng(0)
    sizes = [160, 200, 120, 160]
    out = []
    for i in range(n):
        image = draw_demo_image(rng, size=sizes[i % len(sizes)])[0]
        out.append(np.ascontiguousarray(image[:, :image.shape[1] - 17 * (i % 2)]))
    return out  # square and not: the resize's scale factors differ in x and y


def _same_detections(a, b):
    """Equal detections; ones whose scores are a rounding error apart may swap."""
    assert len(a.boxes) == len(b.boxes) > 0
    order = _match_detections([a.boxes, a.scores, a.labels],
                              [b.boxes, b.scores, b.labels], score_tol=1e-4)
    assert order is not None
    np.testing.assert_allclose(a.boxes, b.boxes[order], atol=0.01)
    np.testing.assert_allclose(a.scores, b.scores[order], atol=1e-4)


@pytest.mark.parametrize('graph', ['nms', 'raw'])
def test_inferencer_detection(detector, graph):
    config, ckpt, nms, raw = detector
    images = _images()
    # a random model gives ~1000 boxes per image above 0.1, crowded enough for an
    # IoU a rounding error from the NMS threshold; above 0.5, ~70
    ref = Inferencer(config, ckpt, score_thr=0.5, batch_size=2).predict(images)
    onnx_file = nms if graph == 'nms' else raw
    inferencer = Inferencer(config, onnx_file, score_thr=0.5, batch_size=2)
    assert inferencer.backend == 'onnxruntime' and 'onnxruntime' in repr(inferencer)
    got = inferencer.predict(images)
    for a, b in zip(ref, got):
        _same_detections(a, b)
    inferencer.score_thr = 0.6  # still applied after the graph's own threshold
    assert all((r.scores >= 0.6).all() for r in inferencer.predict(images))


def test_inferencer_segmentation(tmp_path):
    ckpt, model, cfg, meta = _checkpoint_and_model(SEG, tmp_path / 'w.pth')
    onnx_file = export_loaded(model, cfg, meta, SEG, tmp_path / 'seg.onnx', (128, 256),
                              dynamic=True)
    rng = np.random.default_rng(1)
    images = [draw_demo_street(rng, (128, 256))[0], draw_demo_street(rng, (96, 256))[0]]
    ref = Inferencer(SEG, ckpt).predict(images)
    got = Inferencer(SEG, onnx_file, backend='onnxruntime', threads=1).predict(images)
    for a, b in zip(ref, got):
        assert a.label_map.shape == b.label_map.shape
        assert len(np.unique(a.label_map)) > 3
        assert (a.label_map == b.label_map).mean() > 0.999


def test_bad_combinations(detector, tmp_path):
    _, ckpt, nms, _ = detector
    with pytest.raises(ValueError, match='export one with'):
        Inferencer(DET, ckpt, backend='onnxruntime')
    with pytest.raises(ValueError, match="use backend='onnxruntime'"):
        Inferencer(DET, nms, backend='pytorch')
    with pytest.raises(ValueError, match='backend must be one of'):
        Inferencer(DET, nms, backend='tensorrt')
    with pytest.raises(ValueError, match='is a detection model, but the config builds '
                       'a segmentation model'):
        Inferencer(SEG, nms)
    with pytest.raises(FileNotFoundError, match='export_onnx.py'):
        Inferencer(DET, str(tmp_path / 'missing.onnx'))
    # a graph exported for another size than the config's preprocessing gives
    model, cfg, meta = load_model(SEG)
    small = export_loaded(model, cfg, meta, SEG, tmp_path / 's.onnx', (64, 128))
    image = draw_demo_street(np.random.default_rng(0), (128, 256))[0]
    with pytest.raises(ValueError, match=r'exported for 64x128 inputs, but the '
                       r'preprocessing gives 256x512.*--shape 256 512\) or with '
                       '--dynamic'):
        Inferencer(SEG, small).predict([image])


def test_tools_test_on_onnx_equals_pytorch(tmp_path, detector):
    """tools/test.py CONFIG model.onnx: the config's COCO metrics and predictions (in
    the original images' pixels: 200x200 images, resized to 160) equal to the PyTorch
    checkpoint's on the same data."""
    import pickle
    det_config, ckpt, nms, _ = detector
    make_demo_coco(tmp_path / 'coco', num_train=1, num_val=4, image_size=200, seed=2)
    config = tmp_path / 'cfg.py'
    config.write_text(
        f"_base_ = '{det_config}'\ndata_root = '{tmp_path / 'coco'}/'\n"
        "val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, "
        "dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        "test_evaluator = val_evaluator\n")
    metrics, predictions, logs = {}, {}, {}
    options = {'pth': [], 'onnx': ['--onnx-threads', '1'], 'fused': ['--fuse-conv-bn']}
    for name, weights in (('pth', ckpt), ('onnx', nms), ('fused', ckpt)):
        work = tmp_path / name
        proc = subprocess.run(
            [sys.executable, str(ROOT / 'tools/test.py'), str(config), weights,
             '--work-dir', str(work), '--out', str(work / 'preds.pkl')]
            + options[name],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        logs[name] = proc.stdout + proc.stderr
        metrics[name] = json.loads((work / 'test_metrics.json').read_text())['metrics']
        with open(work / 'preds.pkl', 'rb') as f:
            predictions[name] = pickle.load(f)
    print(metrics)
    assert metrics['pth']['coco/bbox_mAP_50'] >= 0  # a real pycocotools figure
    assert metrics['onnx'] == metrics['pth'] == metrics['fused']
    assert 'BatchNorm layers folded into convolutions, 0 left' in logs['fused']
    for other in ('onnx', 'fused'):
        assert len(predictions['pth']) == len(predictions[other]) == 4
        for a, b in zip(predictions['pth'], predictions[other]):
            assert a['img_path'] == b['img_path'] and a['scale_factor'] == (0.8, 0.8)
            a, b = (_above(p['pred_instances'], 0.5) for p in (a, b))
            assert a.boxes.max() > 160  # in the 200x200 image's pixels
            _same_detections(a, b)
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/test.py'), str(config),
                           nms, '--fuse-conv-bn'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode != 0 and 'folded already' in proc.stderr


def _above(instances, thr):
    from mobilenet_tasks.apis.results import DetectionResult
    keep = (instances['scores'] >= thr).numpy()
    return DetectionResult(boxes=instances['bboxes'].numpy()[keep],
                           scores=instances['scores'].numpy()[keep],
                           labels=instances['labels'].numpy()[keep], class_names=())
