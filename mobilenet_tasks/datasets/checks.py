"""Stop at once, with directions, when a config's dataset is not on disk."""
import os.path as osp
from typing import Iterator, List, Tuple

HOW_TO_GET = {
    'CocoDataset': (
        'COCO 2017 is not on this machine. Download train2017, val2017 and '
        'annotations_trainval2017 from https://cocodataset.org/#download and unpack '
        'them so that data/coco/annotations/instances_train2017.json, '
        'data/coco/train2017/ and data/coco/val2017/ exist (mmdet\'s layout), or point '
        'the config elsewhere with --cfg-options train_dataloader.dataset.data_root=DIR '
        '(and the val/test loaders and val_evaluator.ann_file).'),
    'CityscapesDataset': (
        'Cityscapes is not on this machine. Download leftImg8bit_trainvaltest.zip and '
        'gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com (needs an '
        'account), unpack them under data/cityscapes/ and run '
        '`python tools/dataset_converters/cityscapes.py data/cityscapes` to make the '
        '*_labelTrainIds.png files (mmseg\'s layout).'),
}
DEMO_HINT = ('To try the project without it, `make demo` trains and evaluates on the '
             'built-in demo dataset, which the project generates.')


class DatasetNotFoundError(FileNotFoundError):
    """A dataset named by a config is not where the config says."""


def _datasets(cfg_dataset) -> Iterator[dict]:
    """The leaf dataset configs of a (possibly wrapped) dataset config."""
    if not isinstance(cfg_dataset, dict):
        return
    if 'dataset' in cfg_dataset:  # RepeatDataset, ClassBalancedDataset, ...
        yield from _datasets(cfg_dataset['dataset'])
    elif 'datasets' in cfg_dataset:  # ConcatDataset
        for sub in cfg_dataset['datasets']:
            yield from _datasets(sub)
    else:
        yield cfg_dataset


def missing_data_files(cfg, loaders=('train_dataloader', 'val_dataloader',
                                     'test_dataloader')) -> List[Tuple[str, str, str]]:
    """``(loader, dataset type, path)`` for each annotation file or image folder of
    the config's datasets that does not exist."""
    missing = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds in _datasets(loader_cfg.get('dataset')):
            root = ds.get('data_root') or ''
            paths = []
            if ds.get('ann_file'):
                paths.append(ds['ann_file'])
            prefix = ds.get('data_prefix') or {}
            for key in ('img', 'img_path', 'seg_map_path'):
                if prefix.get(key):
                    paths.append(prefix[key])
            for path in paths:
                full = path if osp.isabs(path) else osp.join(root, path)
                if not osp.exists(full):
                    missing.append((loader, str(ds.get('type', '?')), osp.abspath(full)))
    return missing


def check_data_files(cfg, loaders=('train_dataloader', 'val_dataloader',
                                   'test_dataloader')) -> None:
    """Raise :class:`DatasetNotFoundError` naming every missing path and how to get it.

    Args:
        cfg (Config): A training or test config.
        loaders (Sequence[str]): The dataloaders to check.
    """
    missing = missing_data_files(cfg, loaders)
    if not missing:
        return
    lines = [f'  {loader}: {path} ({ds_type})' for loader, ds_type, path in missing]
    types = sorted({ds_type.split('.')[-1] for _, ds_type, _ in missing})
    advice = [HOW_TO_GET[t] for t in types if t in HOW_TO_GET]
    raise DatasetNotFoundError(
        'The dataset this config trains or tests on is missing. Looked for:\n' +
        '\n'.join(lines) + '\n' + '\n'.join(advice + [DEMO_HINT]))
