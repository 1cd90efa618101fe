"""The demo street scenes in the Cityscapes layout: determinism, converter, mmseg."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import name2label

from mobilenet_tasks.datasets import (CITYSCAPES_TRAIN_IDS, DEMO_CITYSCAPES_LABELS,
                                      convert_cityscapes, make_demo_cityscapes)
from mobilenet_tasks.datasets.demo_cityscapes import CITYSCAPES_MANIFEST_NAME
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]
SIZE = (128, 256)  # smaller than the default (256, 512) to keep the tests fast
LABEL_SUFFIX = '_gtFine_labelTrainIds.png'


def _files(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


def _load_tool(name):
    return load_tool(f'tools/dataset_converters/{name}.py')


def _rasterize_json(ann):
    """Our own rasterisation of a polygon json (OpenCV, not PIL) to trainIds."""
    label_map = np.full((ann['imgHeight'], ann['imgWidth']), 255, np.uint8)
    for obj in ann['objects']:
        train_id = name2label[obj['label']].trainId
        cv2.fillPoly(label_map, [np.array(obj['polygon'], np.int32)], int(train_id))
    return label_map


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo') / 'demo_cityscapes'
    summary = make_demo_cityscapes(root, num_train=4, num_val=6, image_size=SIZE, seed=0)
    written = convert_cityscapes(root)
    return root, summary, written


def test_labels_are_cityscapes_labels():
    for name, train_id in CITYSCAPES_TRAIN_IDS.items():
        assert name2label[name].trainId == train_id, name
    assert len([n for n in DEMO_CITYSCAPES_LABELS if CITYSCAPES_TRAIN_IDS[n] != 255]) >= 6


def test_same_arguments_same_bytes_other_seed_differs(tmp_path):
    kwargs = dict(num_train=3, num_val=2, image_size=(96, 192))
    make_demo_cityscapes(tmp_path / 'a', seed=0, **kwargs)
    make_demo_cityscapes(tmp_path / 'b', seed=0, **kwargs)
    make_demo_cityscapes(tmp_path / 'c', seed=1, **kwargs)
    a, b, c = (_files(tmp_path / name) for name in 'abc')
    assert len(a) == 2 * (3 + 2) + 1
    assert a == b
    assert a.keys() == c.keys()
    for name in a:
        if name.endswith('.png') or name.endswith('_polygons.json'):
            assert a[name] != c[name], name
    # the val set does not depend on num_train
    make_demo_cityscapes(tmp_path / 'd',
                         seed=0,
                         num_train=1,
                         num_val=2,
                         image_size=(96, 192))
    d = _files(tmp_path / 'd')
    val = [name for name in a if '/val/' in name]
    assert len(val) == 4
    for name in val:
        assert d[name] == a[name], name
    # reused when already there
    assert make_demo_cityscapes(tmp_path / 'a', seed=0, **kwargs)['reused']


def test_layout_and_json(dataset):
    root, summary, _ = dataset
    assert (root / CITYSCAPES_MANIFEST_NAME).is_file()
    assert summary['args'] == dict(num_train=4, num_val=6, image_size=list(SIZE), seed=0)
    for split, num in (('train', 4), ('val', 6)):
        images = sorted((root / 'leftImg8bit' / split).glob('*/*_leftImg8bit.png'))
        jsons = sorted((root / 'gtFine' / split).glob('*/*_gtFine_polygons.json'))
        assert len(images) == len(jsons) == num
        assert len({p.parent.name for p in images}) == 3  # three cities
        for image_path, json_path in zip(images, jsons):
            base = image_path.name[:-len('_leftImg8bit.png')]
            assert json_path.name == base + '_gtFine_polygons.json'
            assert base.startswith(image_path.parent.name + '_')
            image = cv2.imread(str(image_path))
            assert image.shape == (*SIZE, 3)
            ann = json.loads(json_path.read_text())
            assert (ann['imgHeight'], ann['imgWidth']) == SIZE
            assert ann['objects'][0]['label'] == 'sky'
            for obj in ann['objects']:
                assert obj['label'] in name2label
                pts = np.array(obj['polygon'])
                assert pts.ndim == 2 and pts.shape[1] == 2 and len(pts) >= 3
                assert pts.dtype.kind == 'i'
                assert pts[:, 0].min() >= 0 and pts[:, 0].max() < SIZE[1]
                assert pts[:, 1].min() >= 0 and pts[:, 1].max() < SIZE[0]


def test_converter_matches_own_rasterisation(dataset):
    root, summary, written = dataset
    assert written == 10
    assert (root / 'val.txt').read_text().splitlines() == sorted(
        f'{p.parent.name}/{p.name[:-len("_gtFine_polygons.json")]}'
        for p in (root / 'gtFine' / 'val').glob('*/*_polygons.json'))
    present = set()
    total = np.zeros(256, np.int64)
    for json_path in sorted((root / 'gtFine').glob('*/*/*_gtFine_polygons.json')):
        label_path = json_path.with_name(
            json_path.name.replace('_gtFine_polygons.json', LABEL_SUFFIX))
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.shape == SIZE
        values = set(np.unique(label).tolist())
        assert values <= set(range(19)) | {255}
        present |= values
        ours = _rasterize_json(json.loads(json_path.read_text()))
        assert (ours == label).mean() > 0.97
        counts, ours_counts = (np.bincount(m.ravel(), minlength=256)
                               for m in (label, ours))
        for train_id in np.flatnonzero(counts >= 300):
            assert abs(int(ours_counts[train_id]) - int(counts[train_id])) <= \
                0.05 * counts[train_id], (json_path.name, train_id)
        total += counts
        # plausible layout: sky on top, road at the bottom
        top, bottom = label[:SIZE[0] // 8], label[-SIZE[0] // 8:]
        assert (top == CITYSCAPES_TRAIN_IDS['sky']).mean() + \
            (top == CITYSCAPES_TRAIN_IDS['building']).mean() > 0.5
        assert (label[SIZE[0] // 2:] == CITYSCAPES_TRAIN_IDS['road']).mean() > 0.1
        assert not np.isin(
            bottom,
            [CITYSCAPES_TRAIN_IDS['sky'], CITYSCAPES_TRAIN_IDS['building']]).any()
        assert not (label[:SIZE[0] // 4] == CITYSCAPES_TRAIN_IDS['road']).any()
    assert len(present - {255}) >= 6
    # the manifest's pixel counts are the converter's (same rasteriser)
    manifest_total = {}
    for split in ('train', 'val'):
        for k, v in summary['splits'][split]['train_id_pixels'].items():
            manifest_total[int(k)] = manifest_total.get(int(k), 0) + v
    assert manifest_total == {k: int(total[k]) for k in manifest_total}


def test_converter_skips_up_to_date(dataset, tmp_path):
    root, _, _ = dataset
    assert convert_cityscapes(root) == 0
    json_path = sorted((root / 'gtFine' / 'val').glob('*/*_polygons.json'))[0]
    label_path = json_path.with_name(
        json_path.name.replace('_gtFine_polygons.json', LABEL_SUFFIX))
    before = label_path.read_bytes()
    stat = label_path.stat()
    os.utime(json_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert convert_cityscapes(root) == 1
    assert label_path.read_bytes() == before


def test_mmseg_cityscapes_dataset_loads(dataset):
    from mmengine.registry import DefaultScope
    from mmseg.datasets import CityscapesDataset
    from mmseg.utils import register_all_modules

    root, _, _ = dataset
    with DefaultScope.overwrite_default_scope('mmseg'):
        register_all_modules(init_default_scope=False)
        ds = CityscapesDataset(
            data_root=str(root),
            data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations')])
        assert len(ds) == 6
        for i in range(2):
            sample = ds[i]
            assert sample['img'].shape == (*SIZE, 3)
            seg = sample['gt_seg_map']
            assert seg.shape == SIZE
            assert set(np.unique(seg).tolist()) <= set(range(19)) | {255}
            assert sample['seg_map_path'].endswith(LABEL_SUFFIX)


def test_missing_gtfine_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        convert_cityscapes(tmp_path / 'cityscapes')
    message = str(info.value)
    assert str(tmp_path / 'cityscapes' / 'gtFine') in message
    assert 'cityscapes-dataset.com' in message
    assert 'make_demo_cityscapes.py' in message
    (tmp_path / 'empty' / 'gtFine').mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='_gtFine_polygons.json'):
        convert_cityscapes(tmp_path / 'empty')


def test_unknown_label_is_a_value_error(tmp_path):
    city = tmp_path / 'gtFine' / 'val' / 'x'
    city.mkdir(parents=True)
    (city / 'x_000000_000019_gtFine_polygons.json').write_text(
        json.dumps(
            dict(imgHeight=8,
                 imgWidth=8,
                 objects=[dict(label='dragon', polygon=[[0, 0], [4, 0], [4, 4]])])))
    with pytest.raises(ValueError, match='x_000000_000019'):
        convert_cityscapes(tmp_path)


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_train=0), 'num_train'),
    (dict(num_val=-1), 'num_val'),
    (dict(num_train=2.5), 'num_train'),
    (dict(image_size=256), 'image_size'),
    (dict(image_size=(256, )), 'image_size'),
    (dict(image_size='256x512'), 'image_size'),
    (dict(image_size=(32, 512)), 'height'),
    (dict(image_size=(256, 512.0)), 'width'),
    (dict(seed=-1), 'seed'),
    (dict(seed=True), 'seed'),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_demo_cityscapes(tmp_path / 'x', **kwargs)
    assert not (tmp_path / 'x').exists()


def test_bad_nproc_and_foreign_directory(tmp_path):
    with pytest.raises(ValueError, match='nproc'):
        convert_cityscapes(tmp_path, nproc=0)
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='demo_cityscapes.json'):
        make_demo_cityscapes(tmp_path / 'mine',
                             num_train=1,
                             num_val=1,
                             image_size=(64, 128))


def test_command_line_tools(tmp_path, capsys):
    make_demo = _load_tool('make_demo_cityscapes')
    out = tmp_path / 'demo'
    argv = [
        '--out',
        str(out), '--num-train', '2', '--num-val', '1', '--height', '64', '--width', '128'
    ]
    assert make_demo.main(argv) == 0
    assert 'converted 3 polygon files' in capsys.readouterr().out
    assert len(list(out.glob(f'gtFine/*/*/*{LABEL_SUFFIX}'))) == 3
    assert make_demo.main(argv + ['--num-val', '0']) == 2
    assert 'num_val' in capsys.readouterr().err

    converter = _load_tool('cityscapes')
    assert converter.main([str(out)]) == 0
    assert 'wrote 0 label maps' in capsys.readouterr().out
    assert converter.main([str(tmp_path / 'nowhere')]) == 2
    assert 'gtFine' in capsys.readouterr().err
