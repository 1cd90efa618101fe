"""Bad data (issue 7): each fault is rejected before training with a message naming the
file and the fault (``data_check.policy='fail'``, the default), or left out with a
warning and counted in the log (``'skip'``)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from mobilenet_tasks.datasets import make_demo_coco
from mobilenet_tasks.datasets.checks import (BadDataError, DataCheckHook,
                                             check_cityscapes, check_data_files,
                                             data_check_policy, validate_datasets)
from mobilenet_tasks.testing import tiny_ssdlite_config

ROOT = Path(__file__).resolve().parents[2]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
CLASSES = ('circle', 'square', 'triangle', 'star')


@pytest.fixture(scope='module')
def clean_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('clean_coco')
    make_demo_coco(root, num_train=6, num_val=2, image_size=64, seed=1)
    return root


@pytest.fixture
def coco(tmp_path, clean_coco):
    """A fresh copy to break."""
    root = tmp_path / 'coco'
    shutil.copytree(clean_coco, root)
    return root


def _ann(root, split='train'):
    return root / 'annotations' / f'instances_{split}.json'


def _edit(root, change, split='train'):
    data = json.loads(_ann(root, split).read_text())
    change(data)
    _ann(root, split).write_text(json.dumps(data))
    return data


def _coco_cfg(root, tmp_path, policy=None, filter_empty_gt=True):
    cfg = dict(work_dir=str(tmp_path / 'work'))
    for loader, split in zip(LOADERS, ('train', 'val', 'val')):
        cfg[loader] = dict(dataset=dict(
            type='CocoDataset', data_root=f'{root}/', metainfo=dict(classes=CLASSES),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'),
            filter_cfg=dict(filter_empty_gt=filter_empty_gt) if split == 'train' else
            None))
    cfg['val_evaluator'] = dict(type='CocoMetric',
                                ann_file=f'{root}/annotations/instances_val.json')
    cfg['test_evaluator'] = dict(cfg['val_evaluator'])
    if policy:
        cfg['data_check'] = dict(policy=policy)
    return Config(cfg)


def _fails(cfg, *expected):
    with pytest.raises(BadDataError) as error:
        check_data_files(cfg)
    message = str(error.value)
    for text in expected:
        assert text in message, message
    return message


def test_clean_data_passes(clean_coco, tmp_path):
    cfg = _coco_cfg(clean_coco, tmp_path)
    check_data_files(cfg)
    # nothing to say, but the train set is watched for faults at run time
    assert cfg.custom_hooks == [dict(type='mobilenet_tasks.DataCheckHook', lines=[],
                                     skipped=0)]
    wrapper = cfg.train_dataloader.dataset
    assert wrapper.type == 'mobilenet_tasks.CheckedDataset' and wrapper.policy == 'fail'
    assert wrapper.dataset.ann_file == 'annotations/instances_train.json'
    check_data_files(cfg)  # idempotent
    assert cfg.train_dataloader.dataset.dataset.type == 'CocoDataset'


def test_policy_values():
    assert data_check_policy(Config()).policy == 'fail'  # the default
    assert data_check_policy(Config(dict(data_check=dict(policy='skip')))).policy == \
        'skip'
    with pytest.raises(ValueError, match='policy must be one of'):
        data_check_policy(Config(dict(data_check=dict(policy='ignore'))))
    with pytest.raises(ValueError, match='unknown keys'):
        data_check_policy(Config(dict(data_check=dict(polcy='skip'))))


def test_truncated_json_names_file_and_position(coco, tmp_path):
    text = _ann(coco).read_text()
    _ann(coco).write_text(text[:len(text) // 2])
    message = _fails(_coco_cfg(coco, tmp_path), str(_ann(coco)), 'invalid JSON at line',
                     'truncated')
    # cannot be skipped: the file is unusable
    with pytest.raises(BadDataError, match='cannot be skipped'):
        check_data_files(_coco_cfg(coco, tmp_path, 'skip'))
    assert 'train_dataloader: 1 fault\n' in message


def test_json_without_coco_keys(coco, tmp_path):
    _ann(coco).write_text(json.dumps({'images': []}))
    _fails(_coco_cfg(coco, tmp_path), 'annotations, categories missing or not a list')


def test_missing_image_file(coco, tmp_path):
    (coco / 'train' / '000002.jpg').unlink()
    _fails(_coco_cfg(coco, tmp_path), f'{coco}/train/000002.jpg: file does not exist',
           "policy='skip'")


@pytest.mark.parametrize('content, fault', [
    (b'', 'file is empty'),
    (b'<html>not found</html>', 'corrupt image'),
])
def test_corrupt_image_file(coco, tmp_path, content, fault):
    (coco / 'train' / '000001.jpg').write_bytes(content)
    _fails(_coco_cfg(coco, tmp_path), f'{coco}/train/000001.jpg: {fault}')


def test_corrupt_image_header_check_without_decoding(coco, tmp_path):
    (coco / 'train' / '000001.jpg').write_bytes(b'<html>not found</html>')
    cfg = _coco_cfg(coco, tmp_path)
    cfg.data_check = dict(decode_images=False)
    _fails(cfg, '000001.jpg: not an image file')


def test_image_size_differs_from_json(coco, tmp_path):
    cv2.imwrite(str(coco / 'train' / '000003.jpg'), np.zeros((32, 48, 3), np.uint8))
    _fails(_coco_cfg(coco, tmp_path),
           '000003.jpg: the image is 48x32, the json says 64x64')


@pytest.mark.parametrize('bbox, fault', [
    ([10, 10, 0, 5], 'zero or negative size box'),
    ([10, 10, 5, -3], 'zero or negative size box'),
    ([60, 10, 20, 20], 'is outside the image'),
    ([-30, -30, 10, 10], 'is outside the image'),
    ([1, 2, 3], 'is not [x, y, width, height]'),
    ([1, 2, 3, float('nan')], 'is not [x, y, width, height]'),
])
def test_bad_boxes(coco, tmp_path, bbox, fault):
    def change(data):
        data['annotations'][0]['bbox'] = bbox
    data = _edit(coco, change)
    ann_id = data['annotations'][0]['id']
    _fails(_coco_cfg(coco, tmp_path), f'{_ann(coco)}: annotation id {ann_id}: ', fault)


def test_unknown_category_id(coco, tmp_path):
    def change(data):
        data['annotations'][1]['category_id'] = 99
    _edit(coco, change)
    _fails(_coco_cfg(coco, tmp_path), 'unknown category_id 99')


def test_annotation_of_unknown_image(coco, tmp_path):
    def change(data):
        data['annotations'][1]['image_id'] = 12345
    _edit(coco, change)
    _fails(_coco_cfg(coco, tmp_path), 'image_id 12345 is not an image of the file')


def test_config_class_missing_from_json_is_fatal_under_any_policy(coco, tmp_path):
    cfg = _coco_cfg(coco, tmp_path, 'skip')
    cfg.train_dataloader.dataset.metainfo = dict(classes=('circle', 'hexagon'))
    with pytest.raises(BadDataError, match=r"classes \['hexagon'\] are not among"):
        check_data_files(cfg)


def test_images_without_annotations_are_counted_not_rejected(coco, tmp_path):
    def change(data):
        first = data['images'][0]['id']
        data['annotations'] = [a for a in data['annotations'] if a['image_id'] != first]
    _edit(coco, change)
    cfg = _coco_cfg(coco, tmp_path)
    log = validate_datasets(cfg)
    assert any('1 of 6 images have no annotations' in line and 'filter_empty_gt' in line
               for line in log), log
    assert cfg.custom_hooks[-1]['type'] == 'mobilenet_tasks.DataCheckHook'
    assert cfg.custom_hooks[-1]['skipped'] == 0
    cfg = _coco_cfg(coco, tmp_path, filter_empty_gt=False)
    assert any('background-only' in line for line in validate_datasets(cfg))


def test_skip_writes_a_cleaned_json_and_counts(coco, tmp_path):
    (coco / 'train' / '000002.jpg').unlink()

    def change(data):
        data['annotations'][0]['bbox'] = [10, 10, 0, 0]
        data['annotations'][1]['category_id'] = 99
    data = _edit(coco, change)
    cfg = _coco_cfg(coco, tmp_path, 'skip')
    with pytest.warns(UserWarning, match='train_dataloader: skipped 1 '
                      'images and'):
        log = validate_datasets(cfg)
    cleaned = Path(cfg.train_dataloader.dataset.dataset.ann_file)
    assert cleaned.parent == tmp_path / 'work' / 'data_check'
    new = json.loads(cleaned.read_text())
    bad_image = next(i['id'] for i in data['images'] if i['file_name'] == '000002.jpg')
    assert bad_image not in {i['id'] for i in new['images']}
    dropped = {data['annotations'][0]['id'], data['annotations'][1]['id']}
    assert not dropped & {a['id'] for a in new['annotations']}
    assert all(a['image_id'] != bad_image for a in new['annotations'])
    assert len(new['images']) == 5
    # the val data is clean: untouched
    assert cfg.val_dataloader.dataset.ann_file == 'annotations/instances_val.json'
    hook = cfg.custom_hooks[-1]
    assert hook['skipped'] == 3 and any('file does not exist' in x for x in log)

    # the cleaned json loads in mmdet
    from mmdet.datasets import CocoDataset
    dataset = CocoDataset(ann_file=str(cleaned), data_root=str(coco),
                          data_prefix=dict(img='train/'),
                          metainfo=dict(classes=CLASSES), pipeline=[],
                          serialize_data=False)
    assert len(dataset) == 5


def test_skip_on_val_points_the_evaluator_at_the_cleaned_json(coco, tmp_path):
    def change(data):
        data['annotations'][0]['bbox'] = [10, 10, -1, 4]
    _edit(coco, change, 'val')
    cfg = _coco_cfg(coco, tmp_path, 'skip')
    with pytest.warns(UserWarning):
        validate_datasets(cfg)
    cleaned = cfg.val_dataloader.dataset.ann_file
    assert cfg.val_evaluator.ann_file == cleaned == cfg.test_evaluator.ann_file
    assert cfg.test_dataloader.dataset.ann_file == cleaned


def test_off_checks_nothing(coco, tmp_path):
    (coco / 'train' / '000001.jpg').write_bytes(b'')
    check_data_files(_coco_cfg(coco, tmp_path, 'off'))


def test_hook_writes_the_count_into_the_log_and_message_hub():
    from unittest.mock import MagicMock
    runner = MagicMock()
    DataCheckHook(lines=['train_dataloader: skipped 2 ...'], skipped=2).before_run(runner)
    runner.message_hub.update_info.assert_called_with('data_check/skipped', 2)
    text = runner.logger.warning.call_args[0][0]
    assert text.startswith('data_check: skipped 2 bad items')


# ---------------------------------------------------------------- Cityscapes
NAME = 'aachen_000000_000019'


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture
def cityscapes(tmp_path):
    root = tmp_path / 'cs'
    for split in ('train', 'val'):
        for i in range(3):
            name = f'aachen_00000{i}_000019'
            _png(root / f'leftImg8bit/{split}/aachen/{name}_leftImg8bit.png',
                 np.full((8, 16, 3), 100, np.uint8))
            label = np.zeros((8, 16), np.uint8)
            label[:, 8:] = 18
            label[0, 0] = 255
            _png(root / f'gtFine/{split}/aachen/{name}_gtFine_labelTrainIds.png', label)
    return root


def _cs_cfg(root, tmp_path, policy=None):
    cfg = Config.fromfile(ROOT / 'configs/lraspp_v3_large_cityscapes.py')
    for loader in LOADERS:
        cfg[loader].dataset.data_root = str(root)
    cfg.work_dir = str(tmp_path / 'work')
    if policy:
        cfg.data_check = dict(policy=policy)
    return cfg


def test_cityscapes_clean_passes(cityscapes, tmp_path):
    check_data_files(_cs_cfg(cityscapes, tmp_path))


def test_cityscapes_label_values_outside_the_classes(cityscapes, tmp_path):
    label = cityscapes / f'gtFine/train/aachen/{NAME}_gtFine_labelTrainIds.png'
    _png(label, np.full((8, 16), 26, np.uint8))  # a labelId (car), not a trainId
    _fails(_cs_cfg(cityscapes, tmp_path), f'{label}: label values 26 are outside the '
           '19 classes', 'labelIds instead of labelTrainIds')


def test_cityscapes_decode_head_classes_must_be_the_datasets(cityscapes, tmp_path):
    cfg = _cs_cfg(cityscapes, tmp_path, 'skip')  # fatal even when skipping bad files
    cfg.model.decode_head.num_classes = 21
    _fails(cfg, 'model.decode_head.num_classes: 21, but the dataset has 19 classes '
           '(CityscapesDataset.METAINFO: road, sidewalk, building, wall, fence, ... '
           '(19)): make them agree (num_classes=19')


def test_cityscapes_missing_and_corrupt_labels(cityscapes, tmp_path):
    label = cityscapes / f'gtFine/train/aachen/{NAME}_gtFine_labelTrainIds.png'
    label.unlink()
    other = cityscapes / 'gtFine/val/aachen/aachen_000001_000019_gtFine_labelTrainIds.png'
    other.write_bytes(other.read_bytes()[:20])
    colour = (cityscapes /
              'gtFine/val/aachen/aachen_000002_000019_gtFine_labelTrainIds.png')
    _png(colour, np.zeros((8, 16, 3), np.uint8))
    message = _fails(_cs_cfg(cityscapes, tmp_path),
                     f'{label}: the label map of {NAME}_leftImg8bit.png does not exist',
                     f'{other}: corrupt image', f'{colour}: a label map has one channel')
    assert 'train_dataloader: 1 fault\n' in message


def test_cityscapes_skip_writes_a_list_without_the_bad_images(cityscapes, tmp_path):
    label = cityscapes / f'gtFine/train/aachen/{NAME}_gtFine_labelTrainIds.png'
    _png(label, np.full((8, 16), 40, np.uint8))
    cfg = _cs_cfg(cityscapes, tmp_path, 'skip')
    with pytest.warns(UserWarning, match='skipped 1 of 3 images'):
        validate_datasets(cfg)
    list_file = Path(cfg.train_dataloader.dataset.dataset.ann_file)
    assert list_file.read_text().split() == ['aachen/aachen_000001_000019',
                                             'aachen/aachen_000002_000019']
    assert not cfg.val_dataloader.dataset.get('ann_file')
    # val and test share their data: one list, counted once
    label = cityscapes / 'gtFine/val/aachen/aachen_000001_000019_gtFine_labelTrainIds.png'
    label.unlink()
    cfg = _cs_cfg(cityscapes, tmp_path, 'skip')
    with pytest.warns(UserWarning):
        validate_datasets(cfg)
    assert cfg.val_dataloader.dataset.ann_file == cfg.test_dataloader.dataset.ann_file
    assert cfg.custom_hooks[-1]['skipped'] == 2
    from mmseg.datasets import CityscapesDataset
    ds = cfg.train_dataloader.dataset.dataset
    dataset = CityscapesDataset(ann_file=str(list_file), data_root=ds.data_root,
                                data_prefix=ds.data_prefix, pipeline=[],
                                serialize_data=False)
    assert len(dataset) == 2 and Path(dataset[0]['seg_map_path']).is_file()


def test_check_cityscapes_decoding_can_be_turned_off_or_sampled(cityscapes):
    label = (cityscapes /
             'gtFine/train/aachen/aachen_000002_000019_gtFine_labelTrainIds.png')
    _png(label, np.full((8, 16), 40, np.uint8))
    img_dir, seg_dir = (str(cityscapes / top / 'train') for top in ('leftImg8bit',
                                                                   'gtFine'))
    faults, good, _ = check_cityscapes(img_dir, seg_dir, decode_labels=False)
    assert not faults and len(good) == 3  # values are only seen when decoded
    faults, _, notes = check_cityscapes(img_dir, seg_dir)
    assert len(faults) == 1 and not notes
    # over decode_limit: evenly spaced ones (first and last of 3 for 2), with a note
    faults, _, notes = check_cityscapes(img_dir, seg_dir, decode_limit=2)
    assert len(faults) == 1
    assert notes == [f'{img_dir}: decoded 2 of 3 images (evenly spaced; the others: '
                     'header only; data_check.decode_images=True for all)',
                     f'{img_dir}: decoded 2 of 3 label maps (evenly spaced; the others: '
                     'header only; data_check.decode_labels=True for all)']
    faults, _, _ = check_cityscapes(img_dir, seg_dir, decode_limit=1)
    assert not faults  # only the first was decoded


# ---------------------------------------------------------------- through the tools
TINY_SCHEDULE = """
train_cfg = dict(max_iters=1, val_interval=100)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=100))
{extra}
"""


def _train(tmp_path, data, extra=''):
    config = tmp_path / 'tiny.py'
    config.write_text(tiny_ssdlite_config(data, input_size=64)
                      + TINY_SCHEDULE.format(extra=extra))
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'), str(config), '--work-dir',
         str(tmp_path / 'work')], cwd=tmp_path, capture_output=True, text=True,
        timeout=600, env={**__import__('os').environ, 'OMP_NUM_THREADS': '1'})
    return proc.returncode, proc.stdout + proc.stderr


def test_train_tool_fails_fast_then_skips_and_logs_the_count(coco, tmp_path):
    (coco / 'train' / '000004.jpg').write_bytes(b'\xff\xd8\xff garbage')
    code, log = _train(tmp_path, coco)
    assert code != 0
    assert 'error: Bad data in the datasets of this config:' in log, log[-2000:]
    assert f'{coco}/train/000004.jpg: corrupt image' in log
    assert 'Traceback' not in log

    # skip: a missing file is left out before training; the garbage one, which passes
    # the header check when images are not decoded, is skipped when it fails to load
    (coco / 'train' / '000005.jpg').unlink()
    code, log = _train(tmp_path, coco, "train_cfg = dict(max_iters=3)\n"
                       "data_check = dict(policy='skip', decode_images=False)")
    assert code == 0, log[-3000:]
    logs = list((tmp_path / 'work').rglob('*.log'))
    text = ''.join(p.read_text() for p in logs)
    assert 'data_check: skipped 1 bad items' in text
    assert '000005.jpg: file does not exist' in text
    assert 'data_check: 1 training samples failed to load at run time' in text
    assert 'data_check: skipped at run time' in log and '000004.jpg' in log


class _Fake:
    metainfo = dict(classes=('a', ))

    def __init__(self, bad):
        self.bad = bad

    def __len__(self):
        return 4

    def get_data_info(self, idx):
        return dict(img_path=f'img{idx}.jpg')

    def __getitem__(self, idx):
        if idx in self.bad:
            raise ValueError('cannot decode')
        return idx


def test_checked_dataset_fails_naming_the_file_or_skips_and_counts():
    from mobilenet_tasks.datasets.checks import CheckedDataset
    dataset = CheckedDataset(_Fake({1}))
    assert dataset[0] == 0 and len(dataset) == 4
    assert dataset.metainfo['classes'] == ('a', )
    with pytest.raises(BadDataError, match='img1.jpg: ValueError: cannot decode'):
        dataset[1]
    dataset = CheckedDataset(_Fake({1, 2}), policy='skip', max_skips=3)
    with pytest.warns(UserWarning, match='skipped at run time img1.jpg'):
        assert dataset[1] == 3
    assert dataset.skipped == 2
    with pytest.raises(BadDataError, match='max_runtime_skips=3'):
        dataset[2], dataset[2]
    import pickle
    assert pickle.loads(pickle.dumps(CheckedDataset(_Fake(set()))))[2] == 2
