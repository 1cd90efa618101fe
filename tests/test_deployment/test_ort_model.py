"""Exported models run by onnxruntime behind the PyTorch model's interface: the
Inferencer (``weights='x.onnx'``) and ``tools/test.py CONFIG x.onnx`` give what the
PyTorch model gives."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilenet_tasks.apis import Inferencer
from mobilenet_tasks.datasets.demo_cityscapes import draw_demo_street
from mobilenet_tasks.datasets.demo_coco import draw_demo_image, make_demo_coco
from mobilenet_tasks.deployment import export_loaded, load_model
from mobilenet_tasks.testing import random_export_checkpoint

from float64_reference import (assert_same_detections,  # noqa: I100
                               detection_tolerances, float64_nms)

ROOT = Path(__file__).resolve().parents[2]
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')


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
    ckpt, model, cfg, meta = random_export_checkpoint(str(config), tmp / 'w.pth')
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


def _float64_inferencer(config, weights, **kwargs) -> Inferencer:
    """An :class:`Inferencer` whose PyTorch model runs in float64 (preprocessing
    included: its data preprocessor's mean and std become float64); predict with it
    under ``float64_nms()``. Its results are rounded to float32 at the end (a half ulp,
    below every bound derived from them)."""
    inferencer = Inferencer(config, weights, **kwargs)
    model = inferencer.model.double()
    predict = model.predict
    model.predict = lambda inputs, samples, **kw: predict(inputs.double(), samples,
                                                          **kw)
    return inferencer


def _detections(result):
    return [result.boxes, result.scores, result.labels]


def _exact(config, weights, images, **kwargs):
    """The PyTorch Inferencer's results on ``images``, computed in float64."""
    with float64_nms():
        return _float64_inferencer(config, weights, **kwargs).predict(images)


def _keep(result, thr):
    """The detections of ``result`` scoring at least ``thr``."""
    keep = result.scores >= thr
    return replace(result, boxes=result.boxes[keep], scores=result.scores[keep],
                   labels=result.labels[keep])


def _threshold_in_a_gap(results, lo, hi):
    """A score in ``[lo, hi]`` in the widest gap between the scores of ``results``:
    no detection is within a rounding error of it in any backend (at a fixed
    threshold, one of the ~300 scores near it could be, and be kept by one backend
    only)."""
    scores = np.sort(np.concatenate([r.scores for r in results]))
    scores = scores[(scores >= lo) & (scores <= hi)]
    i = int(np.argmax(np.diff(scores)))
    return float(scores[i] + scores[i + 1]) / 2


def _tolerances(ref, exact):
    """``[(box tolerance, score tolerance)]`` per image: the bounds for another
    float32 computation (onnxruntime, BN folded) of the float32 results ``ref``
    whose exact values are ``exact`` (see ``float64_reference``)."""
    return [detection_tolerances(_detections(r), _detections(e))
            for r, e in zip(ref, exact)]


def _same_detections(a, b, tolerances):
    """Equal detections within the derived bounds; ones whose scores are within the
    score bound may come in either order."""
    box_tol, score_tol = tolerances
    return assert_same_detections(_detections(a), _detections(b), box_tol, score_tol)


@pytest.fixture(scope='module')
def detector_references(detector):
    """The PyTorch Inferencer's results on ``_images()`` and their bounds.

    A random model gives ~1000 boxes per image above 0.1, crowded enough for an IoU
    a rounding error from the NMS threshold; above 0.5, ~70.
    """
    config, ckpt, _, _ = detector
    images = _images()
    exact = _exact(config, ckpt, images, score_thr=0.5, batch_size=2)
    thr = _threshold_in_a_gap(exact, 0.5, 0.55)
    exact = [_keep(e, thr) for e in exact]
    ref = Inferencer(config, ckpt, score_thr=thr, batch_size=2).predict(images)
    return images, thr, ref, _tolerances(ref, exact)


@pytest.mark.parametrize('graph', ['nms', 'raw'])
def test_inferencer_detection(detector, detector_references, graph):
    config, ckpt, nms, raw = detector
    images, thr, ref, tolerances = detector_references
    onnx_file = nms if graph == 'nms' else raw
    inferencer = Inferencer(config, onnx_file, score_thr=thr, batch_size=2)
    assert inferencer.backend == 'onnxruntime' and 'onnxruntime' in repr(inferencer)
    got = inferencer.predict(images)
    for a, b, tol in zip(ref, got, tolerances):
        diffs = _same_detections(a, b, tol)
        print(f'{graph}: {len(a.scores)} detections, boxes off by {diffs[0]:.3g} px '
              f'({tol[0]:.3g}), scores by {diffs[1]:.3g} ({tol[1]:.3g})')
    inferencer.score_thr = 0.6  # still applied after the graph's own threshold
    assert all((r.scores >= 0.6).all() for r in inferencer.predict(images))


def test_inferencer_segmentation(tmp_path):
    ckpt, model, cfg, meta = random_export_checkpoint(SEG, tmp_path / 'w.pth')
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


def _self_annotations(src: Path, dst: Path, results, classes, score_thr: float):
    """Write ``src`` (COCO) with its annotations replaced by ``results``' detections
    scoring at least ``score_thr`` (the images in ``src``'s order): the model then
    scores a high mAP on it, so that any difference of another backend shows."""
    data = json.loads(src.read_text())
    cat_ids = {c['name']: c['id'] for c in data['categories']}
    annotations = []
    for image, result in zip(data['images'], results):
        # COCO's AP counts the best 100 detections of an image: all of these
        assert (result.scores >= score_thr).sum() <= 100
        for (x1, y1, x2, y2), score, label in zip(*_detections(result)):
            if score >= score_thr:
                w, h = float(x2 - x1), float(y2 - y1)
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image['id'],
                    category_id=cat_ids[classes[label]], bbox=[float(x1), float(y1), w,
                                                               h],
                    area=w * h, iscrowd=0))
    data['annotations'] = annotations
    dst.write_text(json.dumps(data))
    return len(annotations)


def test_tools_test_on_onnx_equals_pytorch(tmp_path, detector):
    """tools/test.py CONFIG model.onnx: the config's COCO metrics and predictions (in
    the original images' pixels: 200x200 images, resized to 160) equal to the PyTorch
    checkpoint's on the same data.

    The ground truth is the PyTorch model's own confident detections (a random model
    scores ~0 on the demo shapes, where every backend ties at 0): PyTorch then scores
    a mAP near 1, and a backend whose boxes, scores or labels differ scores less.
    """
    import pickle
    det_config, ckpt, nms, _ = detector
    make_demo_coco(tmp_path / 'coco', num_train=1, num_val=4, image_size=200, seed=2)
    annotations = tmp_path / 'coco' / 'annotations'
    files = [i['file_name'] for i in json.loads(
        (annotations / 'instances_val.json').read_text())['images']]
    images = [cv2.imread(str(tmp_path / 'coco' / 'val' / f)) for f in files]
    # the exact detections (the config's own score_thr, 0.05: what tools/test.py
    # gives), rounded to float32, are the ground truth above a threshold
    inferencer = _float64_inferencer(det_config, ckpt, score_thr=0.0, batch_size=2)
    with float64_nms():
        exact = inferencer.predict(images)
    thr = _threshold_in_a_gap(exact, 0.55, 0.6)
    num_gt = _self_annotations(annotations / 'instances_val.json',
                               annotations / 'instances_val_self.json', exact,
                               inferencer.class_names, thr)
    assert num_gt > 20
    compared = _threshold_in_a_gap(exact, 0.5, 0.55)  # the detections compared
    config = tmp_path / 'cfg.py'
    config.write_text(
        f"_base_ = '{det_config}'\ndata_root = '{tmp_path / 'coco'}/'\n"
        "_ann = 'annotations/instances_val_self.json'\n"
        "val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, "
        "dataset=dict(data_root=data_root, ann_file=_ann))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + _ann)\n"
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
    tolerances = _tolerances(
        [_above(p['pred_instances'], compared) for p in predictions['pth']],
        [_keep(e, compared) for e in exact])
    print(f'{num_gt} boxes of ground truth (score >= {thr:.4f}):', metrics)
    # every ground-truth box is a detection (IoU 1), found before any other one:
    # AP 1 at every IoU threshold (mmdet rounds to 3 digits)
    assert metrics['pth']['coco/bbox_mAP'] > 0.99
    assert metrics['onnx'] == metrics['pth'] == metrics['fused']
    assert 'BatchNorm layers folded into convolutions, 0 left' in logs['fused']
    for other in ('onnx', 'fused'):
        assert len(predictions['pth']) == len(predictions[other]) == 4
        for a, b, tol, file in zip(predictions['pth'], predictions[other],
                                   tolerances, files):
            assert Path(a['img_path']).name == Path(b['img_path']).name == file
            assert a['scale_factor'] == (0.8, 0.8)
            a, b = (_above(p['pred_instances'], compared) for p in (a, b))
            assert a.boxes.max() > 160  # in the 200x200 image's pixels
            _same_detections(a, b, tol)
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
