"""The Inferencer on the two demo models (random weights): every input kind, the same
predictions as the model's own ``test_step`` through the config's test pipeline, drawn
outputs, and every bad input, checkpoint and model name."""
import copy
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope

from mobilenet_tasks.apis import (DetectionResult, Inferencer, InputError,
                                  SegmentationResult)
from mobilenet_tasks.apis.draw import draw_detections, draw_segmentation
from mobilenet_tasks.apis.inferencer import _is_video
from mobilenet_tasks.utils.config import resolve_config
from mobilenet_tasks.utils.metainfo import classes_and_palette
from mobilenet_tasks.utils.weights import check_state_dict
from mobilenet_tasks.apis.preprocess import Preprocessor, config_test_pipeline
from mobilenet_tasks.utils.config import build_model

ROOT = Path(__file__).resolve().parents[2]
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')
DET_SIZES = [(160, 160), (120, 200), (97, 131)]  # (h, w); all become 160x160
SEG_SIZES = [(128, 256), (128, 256), (90, 150)]  # become 256x512, 256x512, 256x427
# "The same predictions as test_step" means bit for bit: the lean path does the same
# float32 operations (cv2.resize, (x - mean) / std, the same batches) in the same order,
# and the same operations on the same shapes give the same bits on any one CPU; a
# tolerance would hide a preprocessing that differs by a rounding.


def _scene(h, w, seed):
    """A gradient with a few filled discs and some noise: structure for random nets."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    image = np.dstack([x * 255 // (w - 1), y * 255 // (h - 1),
                       (x + y) * 255 // (h + w - 2)]).astype(np.uint8)
    for _ in range(4):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(image, centre, int(rng.integers(5, min(h, w) // 3)), colour, -1)
    noise = rng.integers(0, 24, image.shape)
    return np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def _write_images(folder, sizes):
    """PNG files (lossless: the file holds exactly the array)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f'img{i}.png'
        cv2.imwrite(str(path), _scene(h, w, i))
        paths.append(str(path))
    return paths


def _calibrate_bn(model, size):
    """Random weights, BN statistics of a few scenes at the model's input ``size``
    (w, h): outputs then vary across an image (with the init's statistics a random
    LR-ASPP labels every pixel alike)."""
    scenes = [cv2.resize(_scene(h, w, i), size) for i, (h, w) in enumerate(SEG_SIZES)]
    x = torch.from_numpy(np.stack(scenes)[..., ::-1].copy()).permute(0, 3, 1, 2)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average
    model.train()
    with torch.no_grad():
        model._forward((x.float() - 127.5) / 127.5)
    model.eval()


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ckpts')
    torch.manual_seed(0)
    paths = {}
    for key, config, options, size in (
            ('det', DET, None, (160, 160)), ('seg', SEG, None, (512, 256)),
            ('det3', DET, {'model.bbox_head.num_classes': 3}, (160, 160))):
        model = build_model(config, options)
        _calibrate_bn(model, size)
        paths[key] = str(folder / f'{key}.pth')
        torch.save({'state_dict': model.state_dict()}, paths[key])
    return paths


@pytest.fixture(scope='module')
def det(ckpts):
    return Inferencer(DET, ckpts['det'], score_thr=0.0, batch_size=2)


@pytest.fixture(scope='module')
def seg(ckpts):
    return Inferencer(SEG, ckpts['seg'], batch_size=2)


@pytest.fixture(scope='module')
def det_files(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp('det') / 'images', DET_SIZES)


@pytest.fixture(scope='module')
def seg_files(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp('seg') / 'images', SEG_SIZES)


def _test_step(inferencer, paths):
    """The model's own test_step on ``paths`` as one batch, through the config's test
    pipeline (annotation loading removed, as mmdet's and mmseg's inferencers do)."""
    pipeline = [t for t in config_test_pipeline(inferencer.cfg)
                if 'LoadAnnotations' not in t['type']]
    with DefaultScope.overwrite_default_scope(inferencer.cfg.default_scope):
        compose = Compose(pipeline)
    data = pseudo_collate([compose(dict(img_path=p, img_id=i))
                           for i, p in enumerate(paths)])
    with torch.no_grad():
        return inferencer.model.test_step(data)


def _compare_detections(ours, sample, thr=0.0):
    """Max box and score differences (0); asserts the same boxes (those at ``thr`` or
    above) in score order. Equal scores are common with random weights (one anchor
    shifted over a flat region); they may come in any order."""
    inst = sample.pred_instances
    scores, boxes = inst.scores.numpy(), inst.bboxes.numpy()
    keep = np.flatnonzero(scores >= thr)
    ref = _canonical(boxes[keep], scores[keep], inst.labels.numpy()[keep])
    assert (np.diff(ours.scores) <= 0).all()
    ours = _canonical(ours.boxes, ours.scores, ours.labels)
    assert len(ours[1]) == len(ref[1])
    np.testing.assert_array_equal(ours[2], ref[2])
    box = float(np.abs(ours[0] - ref[0]).max(initial=0))
    score = float(np.abs(ours[1] - ref[1]).max(initial=0))
    np.testing.assert_array_equal(ours[0], ref[0])
    np.testing.assert_array_equal(ours[1], ref[1])
    return box, score


def _canonical(boxes, scores, labels):
    """Sorted by score (descending), then label and box."""
    order = np.lexsort(tuple(boxes.T[::-1]) + (labels, -scores))
    return boxes[order], scores[order], labels[order]


def _same(a, b):
    """Two result lists are identical."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert type(x) is type(y)
        if isinstance(x, DetectionResult):
            for field in ('boxes', 'scores', 'labels'):
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
        else:
            np.testing.assert_array_equal(x.label_map, y.label_map)


# -- the same predictions as test_step ------------------------------------------------
def test_detection_equals_test_step(det, det_files, capsys):
    assert det.task == 'detection' and det._preprocess.lean_resize
    assert det._preprocess.lean_normalise
    results = det(det_files, progress=False)  # batches [0, 1] and [2]
    reference = _test_step(det, det_files[:2]) + _test_step(det, det_files[2:])
    diffs = [_compare_detections(r, s) for r, s in zip(results, reference)]
    for result, (h, w) in zip(results, DET_SIZES):
        assert isinstance(result, DetectionResult) and len(result) > 0
        assert result.boxes.dtype == np.float32 and result.boxes.shape[1] == 4
        assert result.scores.dtype == np.float32 and result.labels.dtype == np.int64
        assert (np.diff(result.scores) <= 0).all()
        assert (result.boxes[:, [0, 2]] <= w + 1e-3).all()
        assert (result.boxes[:, [1, 3]] <= h + 1e-3).all()
    with capsys.disabled():
        print(f'\ndetection vs test_step: {sum(len(r) for r in results)} boxes, max '
              f'box diff {max(d[0] for d in diffs):.3g} px, max score diff '
              f'{max(d[1] for d in diffs):.3g}')


def test_score_threshold_keeps_the_boxes_above_it(det, det_files):
    reference = _test_step(det, det_files[:1])[0]  # the config's own threshold
    scores = np.unique(reference.pred_instances.scores.numpy())
    thr = float(scores[len(scores) // 2:len(scores) // 2 + 2].mean())
    try:
        det.score_thr = thr
        assert det.model.bbox_head.test_cfg.score_thr == thr  # filtered in the head
        result = det(det_files[0])[0]
    finally:
        det.score_thr = 0.0
    assert 0 < len(result) < len(reference.pred_instances)
    assert (result.scores >= thr).all()
    _compare_detections(result, reference, thr)
    assert det.model.bbox_head.test_cfg.score_thr == 0.05  # the config's again


def test_segmentation_equals_test_step(seg, seg_files, capsys):
    assert seg.task == 'segmentation' and seg._preprocess.lean_resize
    assert seg._preprocess.lean_normalise
    results = seg(seg_files, progress=False)  # batches [0, 1] (one tensor) and [2]
    reference = _test_step(seg, seg_files[:2]) + _test_step(seg, seg_files[2:])
    classes = set()
    for result, sample, size in zip(results, reference, SEG_SIZES):
        assert isinstance(result, SegmentationResult)
        assert result.label_map.shape == size and result.label_map.dtype == np.uint8
        np.testing.assert_array_equal(result.label_map,
                                      sample.pred_sem_seg.data[0].numpy())
        classes |= set(np.unique(result.label_map).tolist())
    assert len(classes) > 1  # a constant map would prove little
    with capsys.disabled():
        print(f'\nsegmentation vs test_step: {sum(r.label_map.size for r in results)} '
              f'pixels, {len(classes)} classes, label maps equal')


def test_mmcv_pipeline_and_data_preprocessor_paths_give_the_same(det, seg, det_files,
                                                                 seg_files):
    """A pipeline the lean path does not know runs through mmcv's Compose, a data
    preprocessor it does not know is called: same results."""
    for inferencer, files in ((det, det_files), (seg, seg_files)):
        lean = inferencer(files, progress=False)
        cfg = copy.deepcopy(inferencer.cfg)
        cfg.test_dataloader.dataset.pipeline.insert(-1, dict(type='RandomFlip', prob=0.))
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            slow = Preprocessor(cfg, inferencer.model, inferencer.task)
        assert not slow.lean_resize
        slow.lean_normalise = False
        lean_preprocess, inferencer._preprocess = inferencer._preprocess, slow
        try:
            again = inferencer(files, progress=False)
        finally:
            inferencer._preprocess = lean_preprocess
        _same(lean, again)


# -- input kinds ---------------------------------------------------------------------
def test_every_input_kind(det, det_files):
    arrays = [cv2.imread(p) for p in det_files]
    by_path = det(det_files, progress=False)
    _same(det(arrays, progress=False), by_path)
    _same(det([arrays[0], det_files[1], arrays[2]], progress=False), by_path)
    folder = det(os.path.dirname(det_files[0]), progress=False)  # sorted: img0, 1, 2
    _same(folder, by_path)
    assert [r.source for r in folder] == det_files
    assert [r.source for r in det(arrays[:2])] == ['array_0', 'array_1']
    one = det(det_files[2])
    assert len(one) == 1 and one[0].source == det_files[2]
    _compare_detections(det(arrays[2])[0], _test_step(det, det_files[2:])[0])
    predicted = det.predict(arrays[2:])
    assert predicted[0].source is None
    _same(predicted, one)
    with pytest.raises(TypeError, match=r'pass \[image\]'):
        det.predict(arrays[0])
    assert det([], progress=False) == []


def test_results_to_dict_are_json(det, seg, det_files, seg_files):
    result = det(det_files[0])[0]
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {'boxes', 'scores', 'labels', 'names'}
    assert len(data['boxes']) == len(result) and len(data['boxes'][0]) == 4
    assert data['names'] == [det.class_names[i] for i in data['labels']]
    result = seg(seg_files[2])[0]
    data = json.loads(json.dumps(result.to_dict()))
    assert (data['height'], data['width']) == SEG_SIZES[2]
    assert sum(data['areas'].values()) == SEG_SIZES[2][0] * SEG_SIZES[2][1]
    assert set(data['areas']) <= set(seg.class_names)


def test_class_names_and_palettes(det, seg):
    # the demo config's metainfo; palettes are BGR
    assert det.class_names == ('circle', 'square', 'triangle', 'star')
    assert det.palette[0] == (60, 20, 220) and len(det.palette) == 4
    # mmseg's CityscapesDataset.METAINFO: the config names the dataset type only
    assert len(seg.class_names) == 19 and seg.class_names[:2] == ('road', 'sidewalk')
    assert seg.palette[1] == (232, 35, 244)
    # a checkpoint's dataset_meta comes first; a wrong count is ignored, with a warning
    meta = {'dataset_meta': {'classes': ['a', 'b', 'c', 'd'], 'palette': [(1, 2, 3)] * 4}}
    assert classes_and_palette(det.cfg, meta, 4) == (('a', 'b', 'c', 'd'),
                                                      [(3, 2, 1)] * 4)
    with pytest.warns(UserWarning, match='names 4 classes but the model predicts 5'):
        names, palette = classes_and_palette(det.cfg, {}, 5)
    assert names == tuple(f'class_{i}' for i in range(5)) and len(set(palette)) == 5


# -- drawing ----------------------------------------------------------------------------
def test_drawn_files_and_arrays(det, seg, det_files, seg_files, tmp_path):
    out = tmp_path / 'drawn'
    jpeg = str(tmp_path / 'photo.jpeg')
    cv2.imwrite(jpeg, _scene(100, 140, 7))
    image = _scene(64, 80, 8)
    results = det(det_files + [jpeg, image], out_dir=str(out), draw=True,
                  progress=False)
    assert len(results) == 5
    expected = {'img0.png': DET_SIZES[0], 'img1.png': DET_SIZES[1],
                'img2.png': DET_SIZES[2], 'photo.jpg': (100, 140),
                'array_4.png': (64, 80)}
    assert sorted(os.listdir(out)) == sorted(expected)
    for name, size in expected.items():
        assert cv2.imread(str(out / name)).shape == size + (3, )

    results, drawn = seg(seg_files, return_drawn=True, progress=False)
    for result, canvas, size in zip(results, drawn, SEG_SIZES):
        assert canvas.shape == size + (3, ) and canvas.dtype == np.uint8
        assert not np.array_equal(canvas, cv2.imread(result.source))
    # the same name twice gets a suffix
    seg([seg_files[0], seg_files[0]], out_dir=str(tmp_path / 'twice'), draw=True)
    assert sorted(os.listdir(tmp_path / 'twice')) == ['img0.png', 'img0_1.png']
    with pytest.raises(ValueError, match='needs out_dir'):
        det(det_files[0], draw=True)


def test_draw_detections_boxes_and_labels():
    image = np.full((120, 160, 3), 128, np.uint8)
    result = DetectionResult(np.array([[20, 40, 100, 90]], np.float32),
                             np.array([0.9], np.float32), np.array([1]),
                             ('cat', 'dog'))
    palette = [(255, 0, 0), (0, 200, 255)]
    canvas = draw_detections(image, result, palette)
    assert (image == 128).all()  # drawn on a copy
    assert tuple(canvas[65, 20]) == palette[1]  # the left edge of the box
    label = canvas[25:40, 20:60]  # the filled label above the box
    assert (label == palette[1]).all(-1).mean() > 0.4
    assert (label.sum(-1) < 200).any()  # dark text on the light orange
    assert (canvas[100:, 120:] == 128).all()  # nothing drawn elsewhere


def test_draw_segmentation_overlay():
    image = np.full((64, 96, 3), 100, np.uint8)
    label_map = np.zeros((64, 96), np.uint8)
    label_map[:, 48:] = 1
    result = SegmentationResult(label_map, ('sky', 'road'))
    palette = [(200, 0, 0), (0, 0, 200)]
    canvas = draw_segmentation(image, result, palette, with_labels=False)
    assert tuple(canvas[5, 5]) == (150, 50, 50) and tuple(canvas[5, 90]) == (50, 50, 150)
    labelled = draw_segmentation(image, result, palette)
    assert not np.array_equal(labelled, canvas)  # names written on the regions
    label_map[0, 0] = 255  # ignore index: left as the image
    assert tuple(draw_segmentation(image, result, palette)[0, 0]) == (100, 100, 100)
    with pytest.raises(ValueError, match='draw a result on the image it was predicted'):
        draw_segmentation(image[:32], result, palette)


# -- bad inputs -----------------------------------------------------------------------
def test_bad_paths_raise_naming_the_file(det, det_files, tmp_path):
    with pytest.raises(InputError, match=r'missing\.png: no such file'):
        det(str(tmp_path / 'missing.png'))
    with pytest.raises(InputError, match=r'missing\.png: no such file'):
        det([det_files[0], str(tmp_path / 'missing.png')])
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 50)
    with pytest.raises(InputError, match=r'broken\.png: not an image'):
        det(str(tmp_path / 'broken.png'))
    (tmp_path / 'empty_dir').mkdir()
    with pytest.raises(InputError, match=r'empty_dir: no images in the folder'):
        det(str(tmp_path / 'empty_dir'))
    with pytest.raises(InputError, match='got float'):
        det(3.5)
    with pytest.raises(InputError, match=r'inputs\[1\]: expected an image path'):
        det([det_files[0], {'img': 1}])
    assert _is_video('clip.MP4') and _is_video(0) and not _is_video(True)
    assert not _is_video(det_files[0])


def test_folder_skips_bad_files_and_goes_on(det, det_files, tmp_path):
    folder = tmp_path / 'mixed'
    folder.mkdir()
    for path in det_files:
        shutil.copy(path, folder)
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8' + os.urandom(64))
    (folder / 'empty.png').write_bytes(b'')
    with pytest.warns(UserWarning) as caught:
        results = det(str(folder), progress=False)
    messages = [str(w.message) for w in caught]
    assert any('skipped' in m and 'broken.jpg' in m for m in messages)
    assert any('skipped' in m and 'empty.png' in m for m in messages)
    assert any('skipped 2 of 5 images' in m for m in messages)
    assert [Path(r.source).name for r in results] == ['img0.png', 'img1.png',
                                                      'img2.png']
    assert [Path(p).name for p, _ in det.skipped] == ['broken.jpg', 'empty.png']


def test_folder_skip_warning_names_the_files(det, det_files, tmp_path):
    """The summary warning names the unreadable files (the first 10, then a count)."""
    folder = tmp_path / 'some_bad'
    folder.mkdir()
    shutil.copy(det_files[0], folder / 'good.png')
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8' + os.urandom(64))
    with pytest.warns(UserWarning) as caught:
        det(str(folder), progress=False)
    assert f'{folder}: skipped 1 of 2 images that could not be read: broken.jpg ' \
        '(see Inferencer.skipped)' in [str(w.message) for w in caught]
    for i in range(11):
        (folder / f'empty{i:02d}.png').write_bytes(b'')
    with pytest.warns(UserWarning) as caught:
        det(str(folder), progress=False)
    names = ', '.join(['broken.jpg'] + [f'empty{i:02d}.png' for i in range(9)])
    assert f'{folder}: skipped 12 of 13 images that could not be read: {names} and 2 ' \
        'more (see Inferencer.skipped)' in [str(w.message) for w in caught]


@pytest.mark.parametrize('kind', ['gray', 'rgba', '16bit'])
def test_unusual_images_are_converted_and_predicted(det, seg, tmp_path, kind):
    image = _scene(90, 150, 3)
    if kind == 'gray':
        data, match = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 'grayscale'
    elif kind == 'rgba':
        data, match = np.dstack([image, np.full((90, 150), 200, np.uint8)]), 'alpha'
    else:
        data, match = image.astype(np.uint16) * 257, '16-bit'
    path = tmp_path / f'{kind}.png'
    cv2.imwrite(str(path), data)
    with pytest.warns(UserWarning, match=f'{kind}.png: .*{match}'):
        found = det(str(path))[0]
    assert len(found) > 0 and (found.boxes[:, 2] <= 150 + 1e-3).all()
    with pytest.warns(UserWarning, match=match):
        assert seg(str(path))[0].label_map.shape == (90, 150)
    with pytest.warns(UserWarning, match=f'array_0: .*{match}'):
        assert seg(data)[0].label_map.shape == (90, 150)


# -- model names, checkpoints, devices -----------------------------------------------
def test_model_index_names(ckpts):
    assert Path(resolve_config('ssdlite_v3_large_demo')).resolve() == Path(DET)
    with pytest.raises(ValueError, match='close names: .*ssdlite_v3_large_demo'):
        resolve_config('ssdlite_v3_large_dmo')
    with pytest.raises(ValueError, match=r'no config file configs/nothere\.py'):
        resolve_config('configs/nothere.py')
    with pytest.raises(ValueError, match='model-index.yml lists .* names'):
        resolve_config('qqqqqqqq')
    inferencer = Inferencer('lraspp_v3_large_demo', ckpts['seg'])
    assert inferencer.task == 'segmentation'
    with pytest.warns(UserWarning, match='ssdlite_v3_large_demo: no weights given'):
        assert Inferencer('ssdlite_v3_large_demo').task == 'detection'
    with pytest.raises(ValueError, match='neither an mmdet detector nor an mmseg'):
        Inferencer('mobilenet-v3-small_8xb128_in1k')


def test_checkpoint_of_another_model_is_refused(det, seg, ckpts, tmp_path):
    with pytest.raises(ValueError, match=(
            r'det\.pth do not match .*lraspp_v3_large_demo\.py: \d+ keys of the model '
            r'missing from it \(.*\d+ keys the model does not have \(.*'
            r'It holds a detection model \(bbox_head')):
        Inferencer(SEG, ckpts['det'])
    with pytest.raises(ValueError, match=(
            r'det3\.pth do not match .*: \d+ tensors of another shape \(bbox_head\.'
            r'cls_convs\.0\.\S+: \(\d+, .*in the checkpoint, \(\d+, .*in the model'
            r'.*Only head tensors differ: .*another number of classes')):
        Inferencer(DET, ckpts['det3'])
    state_dict = torch.load(ckpts['seg'])['state_dict']
    # the checkpoint names its config: a converter's meta, or tools/train.py's
    with pytest.raises(ValueError, match="made for configs/lraspp_v3_large_demo.py: "
                       "pass model='configs/lraspp_v3_large_demo.py'"):
        check_state_dict(det.model, state_dict,
                         {'config': 'configs/lraspp_v3_large_demo.py'}, 'x.pth', DET)
    with pytest.raises(ValueError, match='made for configs/lraspp_v3_large_demo.py'):
        check_state_dict(det.model, state_dict,
                         {'experiment_name': 'lraspp_v3_large_demo_20261122_061500'},
                         'x.pth', DET)
    backbone = {k: v for k, v in state_dict.items() if k.startswith('backbone.')}
    with pytest.raises(ValueError, match="backbone.init_cfg=dict\\(type='Pretrained'"):
        check_state_dict(seg.model, backbone, {}, 'x.pth', SEG)
    check_state_dict(seg.model, state_dict, {}, 'x.pth', SEG)  # fits: no error
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match=r'junk\.pth: cannot load it as a checkpoint'):
        Inferencer(DET, str(tmp_path / 'junk.pth'))
    with pytest.raises(FileNotFoundError, match=r'nothere\.pth: no such file'):
        Inferencer(DET, str(tmp_path / 'nothere.pth'))


def test_bad_arguments():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available.*use device='cpu'"):
            Inferencer(DET, device='cuda')
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda"):
        Inferencer(DET, device='tpu')
    with pytest.raises(ValueError, match='batch_size must be a positive int'):
        Inferencer(DET, batch_size=0)
