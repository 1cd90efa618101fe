"""Where a config's data is: its leaf datasets, their types (the registered class,
looked up in the config's default scope) and paths, and the file names of the
Cityscapes layout mmseg reads."""
import os.path as osp
from typing import Iterator, List, Optional, Sequence, Tuple

__all__ = [
    'CONVERT_COMMAND', 'CITYSCAPES_IMG_SUFFIX', 'CITYSCAPES_SEG_MAP_SUFFIX',
    'POLYGON_SUFFIX', 'loader_datasets', 'dataset_keys', 'dataset_class',
    'dataset_type_names',
    'cityscapes_label_ids_path', 'cityscapes_instance_ids_path'
]

CONVERT_COMMAND = 'python tools/dataset_converters/cityscapes.py {root}'
CITYSCAPES_IMG_SUFFIX = '_leftImg8bit.png'  # mmseg's CityscapesDataset defaults
CITYSCAPES_SEG_MAP_SUFFIX = '_gtFine_labelTrainIds.png'
POLYGON_SUFFIX = '_gtFine_polygons.json'


def leaf_datasets(cfg_dataset) -> Iterator[dict]:
    """The leaf dataset configs of a (possibly wrapped) dataset config."""
    if not isinstance(cfg_dataset, dict):
        return
    if 'dataset' in cfg_dataset:  # RepeatDataset, ClassBalancedDataset, ...
        yield from leaf_datasets(cfg_dataset['dataset'])
    elif 'datasets' in cfg_dataset:  # ConcatDataset
        for sub in cfg_dataset['datasets']:
            yield from leaf_datasets(sub)
    else:
        yield cfg_dataset


def loader_datasets(cfg, loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    """``(loader name, leaf dataset config)`` for each dataset of the config's
    ``loaders`` that are set (wrappers such as ConcatDataset looked through)."""
    for loader in loaders:
        for ds in leaf_datasets((cfg.get(loader) or {}).get('dataset')):
            yield loader, ds


def dataset_keys(cfg_dataset, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, leaf dataset config)`` for each leaf dataset of a dataset config
    whose key is ``key``: ``'train_dataloader.dataset'`` gives
    ``'train_dataloader.dataset.dataset'`` for a RepeatDataset's dataset,
    ``'train_dataloader.dataset.datasets[1]'`` for a ConcatDataset's second."""
    if not isinstance(cfg_dataset, dict):
        return
    if 'dataset' in cfg_dataset:
        yield from dataset_keys(cfg_dataset['dataset'], f'{key}.dataset')
    elif 'datasets' in cfg_dataset:
        for i, sub in enumerate(cfg_dataset['datasets']):
            yield from dataset_keys(sub, f'{key}.datasets[{i}]')
    else:
        yield key, cfg_dataset


def type_name(ds: dict) -> str:
    """The type of a dataset config without its scope (``'mmdet.CocoDataset'``:
    ``'CocoDataset'``); also for a class as the type."""
    ds_type = ds.get('type', '?')
    return getattr(ds_type, '__name__', str(ds_type)).split('.')[-1]


def dataset_class(ds: dict, scope: Optional[str] = None) -> Optional[type]:
    """The class a dataset config builds: its ``type`` looked up in the DATASETS
    registry of ``scope`` (the config's ``default_scope``; without one, mmengine's root
    registry, which finds scoped names such as ``'mmdet.CocoDataset'``), or the class
    itself; None when it cannot be looked up (an unknown name, a missing package)."""
    ds_type = ds.get('type')
    if isinstance(ds_type, type):
        return ds_type
    if not isinstance(ds_type, str):
        return None
    from mmengine.registry import DATASETS
    try:
        if scope is None:
            cls = DATASETS.get(ds_type)
        else:
            with DATASETS.switch_scope_and_registry(scope) as registry:
                cls = registry.get(ds_type)
    except Exception:  # noqa: BLE001 - an unknown name or an unimportable package
        return None
    return cls if isinstance(cls, type) else None


def dataset_type_names(dataset_cfg) -> List[str]:
    """Type names (without scope) of the leaf datasets of a (possibly wrapped) dataset
    config, e.g. ``['CityscapesDataset']``."""
    return [type_name(ds) for ds in leaf_datasets(dataset_cfg)]


def is_cityscapes(ds: dict) -> bool:
    return type_name(ds) == 'CityscapesDataset'


def resolve(root: str, path: str) -> str:
    """``path`` made absolute, relative to the dataset's ``data_root`` ``root``."""
    return osp.abspath(path if osp.isabs(path) else osp.join(root or '', path))


def class_names(ds: dict, cls: Optional[type] = None) -> Optional[Sequence[str]]:
    """The dataset config's ``metainfo.classes``, else those of the ``METAINFO`` of its
    class ``cls`` (when given); None when neither names any."""
    meta = ds.get('metainfo') or {}
    classes = meta.get('classes')
    if classes is None:
        classes = (getattr(cls, 'METAINFO', None) or {}).get('classes')
    return list(classes) if classes is not None else None


def evaluator_metrics(evaluator) -> List[dict]:
    """The metric configs of an evaluator config (one metric or a list)."""
    if isinstance(evaluator, dict):
        return [evaluator]
    if isinstance(evaluator, (list, tuple)):
        return [m for m in evaluator if isinstance(m, dict)]
    return []


def cityscapes_dirs(ds: dict) -> Tuple[str, str, str]:
    """``(image dir, label dir, Cityscapes root)`` of a CityscapesDataset config."""
    root = ds.get('data_root') or ''
    prefix = ds.get('data_prefix') or {}
    img_dir, seg_dir = (osp.abspath(osp.join(root, prefix.get(key) or ''))
                        for key in ('img_path', 'seg_map_path'))
    # the converter's root holds gtFine/ (data/cityscapes for .../gtFine/train)
    parent = osp.dirname(seg_dir)
    cs_root = osp.dirname(parent) if osp.basename(parent) == 'gtFine' else osp.abspath(
        root or '.')
    return img_dir, seg_dir, cs_root


def cityscapes_label_ids_path(seg_map_path: str) -> str:
    """The ``*_gtFine_labelIds.png`` next to a ``*_gtFine_labelTrainIds.png``, as mmseg's
    CityscapesMetric names it."""
    return seg_map_path.replace('labelTrainIds.png', 'labelIds.png')


def cityscapes_instance_ids_path(label_ids_path: str) -> str:
    """The ``*_gtFine_instanceIds.png`` cityscapesscripts reads next to a labelIds
    map."""
    return label_ids_path.replace('labelIds', 'instanceIds')
