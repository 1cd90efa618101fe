"""Users' own data (issue 14): a custom mmseg ``BaseSegDataset`` has its label values
checked, a ``CocoDataset`` subclass registered under another name is checked as COCO,
and a missing custom folder is named with its loader and key, without the COCO
download hint."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from mmengine.config import Config

from mobilenet_tasks.datasets import make_demo_coco
from mobilenet_tasks.datasets.checks import (HOW_TO_GET, BadDataError, CocoChecker,
                                             CityscapesChecker, DatasetNotFoundError,
                                             SegmentationChecker, allowed_values,
                                             check_data_files, read_label_map,
                                             validate_datasets)
from mobilenet_tasks.datasets.checks.validate import checker_for

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
CLASSES = ('background', 'road', 'car')
COCO_CLASSES = ('circle', 'square', 'triangle', 'star')


# ---------------------------------------------------------------- segmentation
def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture
def seg_root(tmp_path):
    """A 3-class folder: images/{train,val}/k.jpg, masks/{train,val}/k.png."""
    root = tmp_path / 'my_seg'
    for split in ('train', 'val'):
        for k in range(3):
            _png(root / f'images/{split}/{k}.jpg', np.full((8, 12, 3), 90, np.uint8))
            mask = np.zeros((8, 12), np.uint8)
            mask[:, 4:] = 1
            mask[:, 8:] = 2
            mask[0, 0] = 255
            _png(root / f'masks/{split}/{k}.png', mask)
    return root


def _seg_cfg(root, tmp_path, policy=None, num_classes=3, **dataset):
    cfg = dict(default_scope='mmseg', work_dir=str(tmp_path / 'work'),
               model=dict(type='EncoderDecoder',
                          decode_head=dict(type='FCNHead', num_classes=num_classes)))
    for loader, split in zip(LOADERS, ('train', 'val', 'val')):
        cfg[loader] = dict(dataset=dict(
            dict(type='BaseSegDataset', data_root=str(root),
                 data_prefix=dict(img_path=f'images/{split}',
                                  seg_map_path=f'masks/{split}'),
                 metainfo=dict(classes=CLASSES), pipeline=[]), **dataset))
    if policy:
        cfg['data_check'] = dict(policy=policy)
    return Config(cfg)


def test_seg_label_value_outside_the_classes_names_file_values_and_loader(
        seg_root, tmp_path):
    check_data_files(_seg_cfg(seg_root, tmp_path))  # clean: passes
    bad = seg_root / 'masks/train/1.png'
    mask = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    mask[2, 2], mask[3, 3] = 7, 3
    _png(bad, mask)
    with pytest.raises(BadDataError) as error:
        check_data_files(_seg_cfg(seg_root, tmp_path))
    message = str(error.value)
    assert 'train_dataloader: 1 fault\n' in message
    assert (f'{bad}: label values 3, 7 are outside the 3 classes of metainfo.classes '
            '(classes: 0..2, ignored: 255)') in message, message
    assert "data_check = dict(policy='skip')" in message


def test_seg_skip_writes_a_list_mmseg_loads(seg_root, tmp_path):
    _png(seg_root / 'masks/train/0.png', np.full((8, 12), 9, np.uint8))
    (seg_root / 'masks/val/2.png').unlink()
    cfg = _seg_cfg(seg_root, tmp_path, 'skip')
    with pytest.warns(UserWarning, match='train_dataloader: skipped 1 of 3 images'):
        log = validate_datasets(cfg)
    assert any('the label map of 2.jpg does not exist' in line for line in log), log
    ds = cfg.train_dataloader.dataset.dataset  # in the run-time wrapper
    assert Path(ds.ann_file).read_text().split() == ['1', '2']
    # val and test share the data: one list
    assert cfg.val_dataloader.dataset.ann_file == cfg.test_dataloader.dataset.ann_file
    assert cfg.custom_hooks[-1]['skipped'] == 2
    from mmseg.datasets import BaseSegDataset
    dataset = BaseSegDataset(**{k: v for k, v in ds.items() if k != 'type'},
                             serialize_data=False)
    assert [Path(d['seg_map_path']).name for d in dataset] == ['1.png', '2.png']
    validate_datasets(cfg)  # the cleaned lists pass


def test_seg_reduce_zero_label_and_ignore_index(seg_root, tmp_path):
    assert allowed_values(3, (255, ), reduce_zero_label=True) == {0, 1, 2, 3, 255}
    assert allowed_values(3, (255, 9)) == {0, 1, 2, 9, 255}
    _png(seg_root / 'masks/train/0.png', np.full((8, 12), 3, np.uint8))
    # 3 is the third class when labels count from 1
    check_data_files(_seg_cfg(seg_root, tmp_path, reduce_zero_label=True))
    with pytest.raises(BadDataError,
                       match=r'label values 3 are outside the 3 classes .*labels '
                       'counted from 1\\? reduce_zero_label=True'):
        check_data_files(_seg_cfg(seg_root, tmp_path))
    _png(seg_root / 'masks/train/0.png', np.full((8, 12), 4, np.uint8))
    with pytest.raises(BadDataError, match=r'label values 4 are outside the 3 '
                       r'classes of metainfo.classes \(classes: 1..3, ignored: 0, '
                       r'255; reduce_zero_label: 0 -> 255, v -> v-1\)'):
        check_data_files(_seg_cfg(seg_root, tmp_path, reduce_zero_label=True))
    _png(seg_root / 'masks/train/0.png', np.full((8, 12), 9, np.uint8))
    check_data_files(_seg_cfg(seg_root, tmp_path, ignore_index=9))


def test_seg_class_of_another_name_uses_its_metainfo_and_the_model(seg_root, tmp_path):
    from mmseg.datasets import BaseSegDataset
    from mmseg.registry import DATASETS

    @DATASETS.register_module(name='Issue14SegDataset', force=True)
    class Issue14SegDataset(BaseSegDataset):
        METAINFO = dict(classes=CLASSES)

        def __init__(self, **kwargs):
            super().__init__(img_suffix='.jpg', seg_map_suffix='.png', **kwargs)

    _png(seg_root / 'masks/val/2.png', np.full((8, 12), 5, np.uint8))
    cfg = _seg_cfg(seg_root, tmp_path, type='Issue14SegDataset')
    for loader in LOADERS:
        cfg[loader].dataset.pop('metainfo')
    assert isinstance(checker_for(cfg.val_dataloader.dataset, 'mmseg'),
                      SegmentationChecker)
    with pytest.raises(BadDataError) as error:
        check_data_files(cfg)
    message = str(error.value)
    assert 'val_dataloader, test_dataloader: 1 fault\n' in message
    assert (f'{seg_root}/masks/val/2.png: label values 5 are outside the 3 classes of '
            'Issue14SegDataset.METAINFO') in message

    # the model predicts another number of classes: its own fault, not skippable
    cfg = _seg_cfg(seg_root, tmp_path, 'skip', num_classes=19)
    with pytest.raises(BadDataError) as error:
        check_data_files(cfg)
    message = str(error.value)
    assert ('model.decode_head.num_classes: 19, but the dataset has 3 classes '
            '(metainfo.classes: background, road, car): make them agree '
            '(num_classes=3, or the model\'s classes in the dataset\'s metainfo)'
            ) in message, message
    assert 'train_dataloader, val_dataloader, test_dataloader: 1 fault' in message
    assert 'cannot be skipped' in message


def test_seg_palette_and_colour_masks(seg_root, tmp_path):
    from PIL import Image
    palette = Image.fromarray(np.full((8, 12), 2, np.uint8), 'P')
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    palette.save(seg_root / 'masks/train/0.png')  # VOC's kind: indices, not colours
    fault, label = read_label_map(str(seg_root / 'masks/train/0.png'))
    assert fault is None and label.shape == (8, 12) and set(label.ravel()) == {2}
    check_data_files(_seg_cfg(seg_root, tmp_path))
    colour = seg_root / 'masks/train/1.png'
    _png(colour, np.zeros((8, 12, 3), np.uint8))
    with pytest.raises(BadDataError, match=f'{colour}: a label map has one channel'):
        check_data_files(_seg_cfg(seg_root, tmp_path))


def test_seg_label_values_only_of_decoded_maps(seg_root, tmp_path):
    _png(seg_root / 'masks/train/2.png', np.full((8, 12), 40, np.uint8))
    cfg = _seg_cfg(seg_root, tmp_path)
    cfg.data_check = dict(decode_labels=False)
    check_data_files(cfg)
    cfg = _seg_cfg(seg_root, tmp_path)
    cfg.data_check = dict(decode_limit=2)  # the first and the last of 3
    with pytest.raises(BadDataError, match='2.png: label values 40'):
        validate_datasets(cfg)


def test_checkers_by_registered_class():
    det = [('CocoDataset', CocoChecker), ('Objects365V2Dataset', CocoChecker),
           ('CityscapesDataset', CocoChecker),  # mmdet's: COCO-format instances
           ('LVISV1Dataset', type(None)), ('CocoPanopticDataset', type(None))]
    seg = [('CityscapesDataset', CityscapesChecker),
           ('ADE20KDataset', SegmentationChecker),
           ('PascalVOCDataset', SegmentationChecker)]
    for scope, rows in (('mmdet', det), ('mmseg', seg)):
        for name, kind in rows:
            assert type(checker_for(dict(type=name), scope)) is kind, (scope, name)
    # no scope: by the name
    assert type(checker_for(dict(type='CityscapesDataset'))) is CityscapesChecker
    assert type(checker_for(dict(type='mmdet.CityscapesDataset'))) is CocoChecker


# ---------------------------------------------------------------- COCO subclass
@pytest.fixture(scope='module')
def clean_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('clean_coco')
    make_demo_coco(root, num_train=4, num_val=2, image_size=64, seed=3)
    return root


def _coco_cfg(root, tmp_path, ds_type, ann=('train', 'val', 'val'), **roots):
    cfg = dict(default_scope='mmdet', work_dir=str(tmp_path / 'work'))
    for loader, split in zip(LOADERS, ann):
        cfg[loader] = dict(dataset=dict(
            type=ds_type, data_root=roots.get(loader, f'{root}/'),
            metainfo=dict(classes=COCO_CLASSES),
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/')))
    return Config(cfg)


def test_coco_subclass_of_another_name_is_checked(clean_coco, tmp_path):
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS

    @DATASETS.register_module(name='Issue14CocoDataset', force=True)
    class Issue14CocoDataset(CocoDataset):
        pass

    root = tmp_path / 'coco'
    shutil.copytree(clean_coco, root)
    ann = root / 'annotations/instances_train.json'
    data = json.loads(ann.read_text())
    data['annotations'][0]['bbox'] = [3, 3, 0, 5]
    # a name that no suffix rule would take for COCO json
    plain = root / 'annotations/instances_train'
    plain.write_text(json.dumps(data))
    cfg = _coco_cfg(root, tmp_path, 'Issue14CocoDataset')
    cfg.train_dataloader.dataset.ann_file = 'annotations/instances_train'
    ds = cfg.train_dataloader.dataset
    assert not CocoChecker().claims(ds) and isinstance(checker_for(ds, 'mmdet'),
                                                       CocoChecker)
    with pytest.raises(BadDataError) as error:
        check_data_files(cfg)
    message = str(error.value)
    assert 'train_dataloader: 1 fault\n' in message
    assert (f'{plain}: annotation id {data["annotations"][0]["id"]}: zero or negative '
            'size box [3, 3, 0, 5]') in message


# ---------------------------------------------------------------- missing paths
def test_custom_folder_missing_in_the_test_loader_only(clean_coco, tmp_path,
                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/coco here
    typo = tmp_path / 'my_cocoo'
    cfg = _coco_cfg(clean_coco, tmp_path, 'CocoDataset',
                    test_dataloader=f'{typo}/')
    with pytest.raises(DatasetNotFoundError) as error:
        check_data_files(cfg)
    message = str(error.value)
    assert (f"  test_dataloader: {typo}/annotations/instances_val.json (CocoDataset), "
            "set by test_dataloader.dataset.ann_file='annotations/instances_val.json' "
            f"under data_root='{typo}/' (no such folder)") in message, message
    assert "set by test_dataloader.dataset.data_prefix.img='val/'" in message
    assert ('Fix these paths in the config or with --cfg-options '
            'test_dataloader.dataset.data_root=DIR, or put the data there.') in message
    assert ("--cfg-options val_dataloader.* overrides do not reach test_dataloader"
            in message)
    assert 'train_dataloader:' not in message and 'val_dataloader:' not in message
    # a user's folder: not "download COCO 2017"
    assert HOW_TO_GET['CocoDataset'] not in message and 'make demo' not in message

    # left at the shipped place while val is the user's: both said
    cfg = _coco_cfg(clean_coco, tmp_path, 'CocoDataset',
                    test_dataloader='data/coco/')
    with pytest.raises(DatasetNotFoundError) as error:
        check_data_files(cfg)
    message = str(error.value)
    assert HOW_TO_GET['CocoDataset'] in message
    assert 'overrides do not reach test_dataloader' in message
    assert 'Fix th' not in message

    # a custom file in an existing folder
    cfg = _coco_cfg(clean_coco, tmp_path, 'CocoDataset')
    cfg.val_dataloader.dataset.ann_file = 'annotations/mine.json'
    with pytest.raises(DatasetNotFoundError) as error:
        check_data_files(cfg, loaders=('val_dataloader', ))
    message = str(error.value)
    assert (f"  val_dataloader: {clean_coco}/annotations/mine.json (CocoDataset), set "
            f"by val_dataloader.dataset.ann_file='annotations/mine.json' under "
            f"data_root='{clean_coco}/'\n") in message, message
    assert ('Fix this path in the config or with --cfg-options '
            'val_dataloader.dataset.ann_file=PATH') in message
    assert HOW_TO_GET['CocoDataset'] not in message
