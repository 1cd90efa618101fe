"""The built-in demo detection dataset: determinism, COCO validity, tight boxes, mmdet."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mobilenet_tasks.datasets import (DEMO_CLASSES, DEMO_METAINFO, draw_demo_image,
                                      image_rng, make_demo_coco)
from mobilenet_tasks.datasets.demo_coco import MANIFEST_NAME, _visible_objects

ROOT = Path(__file__).resolve().parents[2]
SIZE = 96  # smaller than the default 160 to keep the tests fast


def _files(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def _load(root, split):
    return json.loads((root / 'annotations' / f'instances_{split}.json').read_text())


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo') / 'demo_coco'
    summary = make_demo_coco(root, num_train=40, num_val=6, image_size=SIZE, seed=0)
    return root, summary


def test_metainfo():
    assert 3 <= len(DEMO_CLASSES) <= 5
    assert DEMO_METAINFO['classes'] == DEMO_CLASSES
    assert len(DEMO_METAINFO['palette']) == len(DEMO_CLASSES)


def test_same_arguments_same_bytes_other_seed_differs(tmp_path):
    kwargs = dict(num_train=5, num_val=3, image_size=SIZE)
    make_demo_coco(tmp_path / 'a', seed=0, **kwargs)
    make_demo_coco(tmp_path / 'b', seed=0, **kwargs)
    make_demo_coco(tmp_path / 'c', seed=1, **kwargs)
    a, b, c = (_files(tmp_path / name) for name in 'abc')
    assert len(a) == 5 + 3 + 2 + 1
    assert a == b
    assert a.keys() == c.keys()
    for name in a:
        if name.endswith('.jpg') or name.startswith('annotations'):
            assert a[name] != c[name], name
    # the val set does not depend on num_train; train and val images differ
    make_demo_coco(tmp_path / 'd', seed=0, num_train=2, num_val=3, image_size=SIZE)
    d = _files(tmp_path / 'd')
    for name in a:
        if name.startswith('val/') or name.endswith('instances_val.json'):
            assert d[name] == a[name], name
    assert a['train/000000.jpg'] != a['val/000000.jpg']
    # image_rng: same (seed, split, index), same stream
    assert image_rng(3, 'val', 7).random() == image_rng(3, 'val', 7).random()
    assert image_rng(3, 'val', 7).random() != image_rng(3, 'train', 7).random()


def test_coco_json_is_valid(dataset):
    root, summary = dataset
    total = {name: 0 for name in DEMO_CLASSES}
    for split, num in (('train', 40), ('val', 6)):
        coco = COCO(str(root / 'annotations' / f'instances_{split}.json'))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(DEMO_CLASSES)
        assert coco.getCatIds() == [1, 2, 3, 4][:len(DEMO_CLASSES)]
        assert sorted(coco.getImgIds()) == list(range(1, num + 1))
        counts = {name: 0 for name in DEMO_CLASSES}
        for img in coco.loadImgs(coco.getImgIds()):
            path = root / split / img['file_name']
            image = cv2.imread(str(path))
            assert image.shape == (img['height'], img['width'], 3) == (SIZE, SIZE, 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
            assert 1 <= len(anns) <= 4
            for ann in anns:
                x, y, w, h = ann['bbox']
                assert x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE
                assert w >= 4 and h >= 4
                assert ann['iscrowd'] == 0
                assert 0 < ann['area'] <= w * h
                assert ann['category_id'] in coco.cats
                counts[coco.cats[ann['category_id']]['name']] += 1
                # the polygons rasterise back into the box, with about the stated area
                seg = coco.annToMask(ann).astype(bool)
                ys, xs = np.nonzero(seg)
                assert xs.min() >= x and xs.max() < x + w
                assert ys.min() >= y and ys.max() < y + h
                assert abs(int(seg.sum()) - ann['area']) <= 0.25 * ann['area'] + 4
        assert counts == summary['splits'][split]['counts']
        assert sum(counts.values()) == summary['splits'][split]['num_objects']
        for name in DEMO_CLASSES:
            total[name] += counts[name]
    assert all(n > 0 for n in total.values()), total
    assert total == summary['counts']
    ann_ids = [a['id'] for a in _load(root, 'train')['annotations']]
    assert ann_ids == list(range(1, len(ann_ids) + 1))


def test_boxes_are_tight_around_the_drawn_pixels():
    size = 128
    occluded = 0
    for index in range(12):
        rng = image_rng(5, 'train', index)
        image, objects, background = draw_demo_image(rng, size, 2, 4,
                                                     return_background=True)
        assert image.shape == background.shape == (size, size, 3)
        assert image.dtype == np.uint8
        assert len(objects) >= 2
        union = np.zeros((size, size), bool)
        for obj in objects:
            mask = obj['mask']
            assert not (mask & union).any()  # visible parts never overlap
            union |= mask
            assert not (mask & ~obj['full_mask']).any()
            assert obj['visible_fraction'] >= 0.5
            occluded += obj['visible_fraction'] < 1
            assert obj['area'] == mask.sum()
            assert obj['category_id'] == obj['label'] + 1
            assert DEMO_CLASSES[obj['label']] == obj['name']
            ys, xs = np.nonzero(mask)
            x, y, w, h = obj['bbox']
            assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
            # the whole shape spans roughly 15% to 60% of the image side
            fy, fx = np.nonzero(obj['full_mask'])
            extent = max(fx.max() - fx.min(), fy.max() - fy.min()) + 1
            assert 0.1 * size <= extent <= 0.6 * size + 2
            # the object is really drawn there: its pixels differ from the background
            changed = np.abs(image[mask].astype(int) - background[mask]).max(axis=1) > 0
            assert changed.mean() > 0.9
        # nothing else was drawn over the background
        assert np.array_equal(image[~union], background[~union])
    assert occluded > 0  # the boxes of partly hidden objects were checked too


def test_mostly_hidden_objects_are_dropped():
    size = 64
    bottom = np.zeros((size, size), bool)
    bottom[10:30, 10:30] = True
    top = np.zeros((size, size), bool)
    top[12:40, 5:40] = True  # leaves 2 of 20 rows of the bottom square visible
    small = np.zeros((size, size), bool)
    small[50:60, 50:60] = True
    objects = [
        dict(label=1, full_mask=bottom, full_area=int(bottom.sum())),
        dict(label=0, full_mask=small, full_area=int(small.sum())),
        dict(label=2, full_mask=top, full_area=int(top.sum())),
    ]
    kept = _visible_objects(objects, size)
    assert [o['label'] for o in kept] == [0, 2]
    assert kept[1]['bbox'] == [5, 12, 35, 28]
    assert kept[0]['visible_fraction'] == 1.0


def test_dataset_images_match_draw_demo_image(dataset):
    root, _ = dataset
    data = _load(root, 'val')
    for img in data['images'][:3]:
        index = img['id'] - 1
        image, objects = draw_demo_image(image_rng(0, 'val', index), SIZE)
        jpeg = cv2.imread(str(root / 'val' / img['file_name']))[..., ::-1]
        assert np.abs(jpeg.astype(int) - image).mean() < 4  # quality 95
        anns = [a for a in data['annotations'] if a['image_id'] == img['id']]
        assert [a['bbox'] for a in anns] == [o['bbox'] for o in objects]
        assert [a['category_id'] for a in anns] == [o['category_id'] for o in objects]
        assert [a['area'] for a in anns] == [o['area'] for o in objects]
        for ann, obj in zip(anns, objects):
            rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'], SIZE, SIZE))
            seg = mask_utils.decode(rle).astype(bool)
            iou = (seg & obj['mask']).sum() / (seg | obj['mask']).sum()
            assert iou > 0.75


def test_mmdet_coco_dataset_loads_it(dataset):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    root, _ = dataset
    data = _load(root, 'val')
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = CocoDataset(
            data_root=str(root),
            ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/'),
            metainfo=DEMO_METAINFO,
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True)],
            test_mode=False)
        assert len(ds) == 6
        assert ds.metainfo['classes'] == DEMO_CLASSES
        for i in range(len(ds)):
            item = ds[i]
            anns = [a for a in data['annotations'] if a['image_id'] == item['img_id']]
            expected = np.array([[x, y, x + w, y + h] for x, y, w, h in
                                 (a['bbox'] for a in anns)], np.float32)
            np.testing.assert_array_equal(item['gt_bboxes'].numpy(), expected)
            np.testing.assert_array_equal(item['gt_bboxes_labels'],
                                          [a['category_id'] - 1 for a in anns])
            assert item['img'].shape == (SIZE, SIZE, 3)
            assert item['img_path'].endswith(f'val/{item["img_id"] - 1:06d}.jpg')


def test_manifest_reuse_and_clean_regeneration(tmp_path):
    out = tmp_path / 'demo'
    first = make_demo_coco(out, num_train=4, num_val=2, image_size=64)
    assert not first['reused']
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest['version'] >= 1
    assert manifest['args'] == dict(num_train=4, num_val=2, image_size=64, seed=0,
                                    min_objects=1, max_objects=4)
    stamp = (out / 'train' / '000000.jpg').stat().st_mtime_ns
    inode = (out / 'train' / '000000.jpg').stat().st_ino

    again = make_demo_coco(out, num_train=4, num_val=2, image_size=64)
    assert again['reused']
    assert again['splits'] == first['splits'] and again['counts'] == first['counts']
    assert (out / 'train' / '000000.jpg').stat().st_mtime_ns == stamp
    assert (out / 'train' / '000000.jpg').stat().st_ino == inode

    # other arguments: regenerated in place, nothing of the old one left
    other = make_demo_coco(out, num_train=2, num_val=2, image_size=64, seed=3)
    assert not other['reused']
    assert sorted(p.name for p in (out / 'train').iterdir()) == ['000000.jpg',
                                                                 '000001.jpg']
    assert json.loads((out / MANIFEST_NAME).read_text())['args']['seed'] == 3
    assert sorted(p.name for p in tmp_path.iterdir()
                  if not p.name.endswith('.lock')) == ['demo']

    # an incomplete dataset (an image deleted) is regenerated, not reused
    (out / 'val' / '000001.jpg').unlink()
    repaired = make_demo_coco(out, num_train=2, num_val=2, image_size=64, seed=3)
    assert not repaired['reused']
    assert (out / 'val' / '000001.jpg').is_file()

    # a foreign non-empty directory is left alone
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not empty'):
        make_demo_coco(foreign, num_train=1, num_val=1, image_size=64)
    assert [p.name for p in foreign.iterdir()] == ['keep.txt']


def test_a_failed_generation_leaves_the_old_dataset(tmp_path, monkeypatch):
    from mobilenet_tasks.datasets import demo_coco
    out = tmp_path / 'demo'
    make_demo_coco(out, num_train=2, num_val=1, image_size=64)
    before = _files(out)
    calls = []
    imencode = cv2.imencode

    def failing_imencode(*args):  # the third image fails to be written
        calls.append(1)
        if len(calls) > 2:
            raise OSError('disk full')
        return imencode(*args)

    monkeypatch.setattr(demo_coco.cv2, 'imencode', failing_imencode)
    with pytest.raises(OSError, match='disk full'):
        make_demo_coco(out, num_train=5, num_val=1, image_size=64)
    monkeypatch.undo()
    assert len(calls) == 3
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()
                  if not p.name.endswith('.lock')) == ['demo']


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_train=0), 'num_train must be >= 1'),
    (dict(num_val=0), 'num_val must be >= 1'),
    (dict(image_size=63), 'image_size must be in'),
    (dict(image_size=100.0), 'image_size must be an integer'),
    (dict(seed=-1), 'seed must be >= 0'),
    (dict(min_objects=3, max_objects=2), 'must not exceed'),
    (dict(min_objects=0), 'min_objects must be in'),
    (dict(max_objects=99), 'max_objects must be in'),
    (dict(num_train=True), 'num_train must be an integer'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_demo_coco(tmp_path / 'out', **kwargs)
    assert not (tmp_path / 'out').exists()


def test_cli_writes_the_dataset(tmp_path):
    out = tmp_path / 'cli'
    script = ROOT / 'tools' / 'dataset_converters' / 'make_demo_coco.py'
    cmd = [sys.executable, str(script), '--out', str(out), '--num-train', '3',
           '--num-val', '2', '--size', '64', '--seed', '1']
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'train: 3 images' in result.stdout and 'val: 2 images' in result.stdout
    assert str(out / 'annotations' / 'instances_train.json') in result.stdout
    assert len(list((out / 'train').glob('*.jpg'))) == 3
    assert len(_load(out, 'val')['images']) == 2
    assert json.loads((out / MANIFEST_NAME).read_text())['args']['seed'] == 1
    same = make_demo_coco(out, num_train=3, num_val=2, image_size=64, seed=1)
    assert same['reused']

    bad = subprocess.run(cmd[:2] + ['--out', str(tmp_path / 'bad'), '--size', '32'],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert 'image_size must be in' in bad.stderr
