"""check_data_files and check_cityscapes_eval_files: what is missing or unusable in a
Cityscapes tree is named, with the command that fixes it, before any training."""
import copy
from pathlib import Path

import pytest
from mmengine.config import Config

from mobilenet_tasks.datasets.checks import (DatasetNotFoundError,
                                             check_cityscapes_eval_files,
                                             check_data_files, cityscapes_problems)

ROOT = Path(__file__).resolve().parents[2]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
NAME = 'aachen_000000_000019'


@pytest.fixture(scope='module')
def cityscapes_cfg():
    return Config.fromfile(ROOT / 'configs/lraspp_v3_large_cityscapes.py')


def _cfg(cityscapes_cfg, data_root):
    cfg = copy.deepcopy(cityscapes_cfg)
    for loader in LOADERS:
        cfg[loader].dataset.data_root = str(data_root)
    return cfg


def _tree(root, *files):
    """A Cityscapes tree: empty ``leftImg8bit/{train,val}`` and ``gtFine/{train,val}``
    folders, plus ``files`` (paths relative to ``root``)."""
    for top in ('leftImg8bit', 'gtFine'):
        for split in ('train', 'val'):
            (root / top / split).mkdir(parents=True, exist_ok=True)
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    return root


def _complete(root, *extra_suffixes):
    files = []
    for split, city in (('train', 'aachen'), ('val', 'frankfurt')):
        name = NAME.replace('aachen', city)
        files += [f'leftImg8bit/{split}/{city}/{name}_leftImg8bit.png',
                  f'gtFine/{split}/{city}/{name}_gtFine_polygons.json',
                  f'gtFine/{split}/{city}/{name}_gtFine_labelTrainIds.png']
        files += [f'gtFine/{split}/{city}/{name}{suffix}' for suffix in extra_suffixes]
    return _tree(root, *files)


def test_complete_tree_passes(tmp_path, cityscapes_cfg):
    cfg = _cfg(cityscapes_cfg, _complete(tmp_path))
    check_data_files(cfg, validate=False)  # touched (empty) files: paths only
    assert cityscapes_problems(cfg) == []


def test_missing_folders_are_listed(tmp_path, cityscapes_cfg):
    cfg = _cfg(cityscapes_cfg, tmp_path / 'nowhere')
    with pytest.raises(DatasetNotFoundError) as error:
        check_data_files(cfg)
    message = str(error.value)
    missing = tmp_path / 'nowhere' / 'leftImg8bit' / 'train'
    assert f'train_dataloader: {missing} (CityscapesDataset)' in message
    assert 'cityscapes-dataset.com' in message and 'make demo' in message


def test_empty_image_folder(tmp_path, cityscapes_cfg):
    root = _complete(tmp_path)
    for image in (root / 'leftImg8bit' / 'val').rglob('*.png'):
        image.unlink()
    with pytest.raises(DatasetNotFoundError) as error:
        check_data_files(_cfg(cityscapes_cfg, root))
    message = str(error.value)
    # val and test share the folder: one line naming both loaders
    assert (f'val_dataloader, test_dataloader: no *_leftImg8bit.png images under '
            f'{root}/leftImg8bit/val') in message
    assert 'train_dataloader' not in message
    assert 'leftImg8bit_trainvaltest.zip' in message


def test_unconverted_polygons_name_the_converter(tmp_path, cityscapes_cfg):
    root = _complete(tmp_path, '_gtFine_labelIds.png')
    for label_map in root.rglob('*_labelTrainIds.png'):
        label_map.unlink()
    with pytest.raises(DatasetNotFoundError) as error:
        check_data_files(_cfg(cityscapes_cfg, root))
    message = str(error.value)
    assert 'not converted yet' in message
    assert f'Run `python tools/dataset_converters/cityscapes.py {root}`' in message
    assert f'{root}/gtFine/train' in message and f'{root}/gtFine/val' in message
    # only the loaders asked for
    problems = cityscapes_problems(_cfg(cityscapes_cfg, root), ('test_dataloader', ))
    assert len(problems) == 1 and problems[0].startswith('test_dataloader: ')


def test_no_labels_and_no_polygons(tmp_path, cityscapes_cfg):
    root = _tree(tmp_path, f'leftImg8bit/train/aachen/{NAME}_leftImg8bit.png',
                 f'leftImg8bit/val/aachen/{NAME}_leftImg8bit.png')
    problems = cityscapes_problems(_cfg(cityscapes_cfg, root))
    assert len(problems) == 2
    assert 'gtFine_trainvaltest.zip' in problems[0] and 'cityscapes.py' in problems[0]


def test_other_datasets_are_not_looked_into(tmp_path):
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='CocoDataset', data_root=str(tmp_path), data_prefix=dict(img='')))))
    check_data_files(cfg, loaders=('train_dataloader', ))  # tmp_path exists, is empty


def test_cityscapes_eval_needs_label_ids(tmp_path, cityscapes_cfg):
    root = _complete(tmp_path)
    cfg = _cfg(cityscapes_cfg, root)
    with pytest.raises(DatasetNotFoundError) as error:
        check_cityscapes_eval_files(cfg)
    message = str(error.value)
    assert message.startswith('test_dataloader: ')
    assert 'frankfurt_000000_000019_gtFine_labelIds.png does not exist' in message
    assert f'`python tools/dataset_converters/cityscapes.py {root} --label-ids`' \
        in message

    _complete(tmp_path, '_gtFine_labelIds.png')
    check_cityscapes_eval_files(cfg, instance_ids=False)
    with pytest.raises(DatasetNotFoundError, match='_gtFine_instanceIds.png does not'):
        check_cityscapes_eval_files(cfg)
    _complete(tmp_path, '_gtFine_labelIds.png', '_gtFine_instanceIds.png')
    check_cityscapes_eval_files(cfg)
