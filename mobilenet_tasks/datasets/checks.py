"""Stop at once, with directions, when a config's dataset is not on disk.

Besides missing annotation files and image folders (any dataset), a Cityscapes tree is
checked for what mmseg would otherwise stumble over later: an image folder without
images (mmseg would build an empty dataset) and a gtFine folder whose polygons are not
converted to ``*_gtFine_labelTrainIds.png`` yet. The checks glob with early exit, so
they cost milliseconds on the real dataset.
"""
import os.path as osp
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

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


CONVERT_COMMAND = 'python tools/dataset_converters/cityscapes.py {root}'
CITYSCAPES_IMG_SUFFIX = '_leftImg8bit.png'  # mmseg's CityscapesDataset defaults
CITYSCAPES_SEG_MAP_SUFFIX = '_gtFine_labelTrainIds.png'
POLYGON_SUFFIX = '_gtFine_polygons.json'


class DatasetNotFoundError(FileNotFoundError):
    """A dataset named by a config is not where the config says, or is incomplete."""


class BadDataError(DatasetNotFoundError):
    """The dataset is there but holds bad data (corrupt or missing files, bad boxes,
    unknown categories, label values outside the classes), found under
    ``data_check.policy='fail'``: see :mod:`mobilenet_tasks.datasets.validation`.

    A subclass of :class:`DatasetNotFoundError` so that the tools, which stop with the
    message of that error, stop with this one too.
    """


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


def loader_datasets(cfg, loaders: Sequence[str]) -> Iterator[Tuple[str, dict]]:
    """``(loader name, leaf dataset config)`` for each dataset of the config's
    ``loaders`` that are set (wrappers such as ConcatDataset looked through)."""
    for loader in loaders:
        for ds in _datasets((cfg.get(loader) or {}).get('dataset')):
            yield loader, ds


def missing_data_files(cfg, loaders=('train_dataloader', 'val_dataloader',
                                     'test_dataloader')) -> List[Tuple[str, str, str]]:
    """``(loader, dataset type, path)`` for each annotation file or image folder of
    the config's datasets that does not exist."""
    missing = []
    for loader, ds in loader_datasets(cfg, loaders):
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


def _type_name(ds: dict) -> str:
    ds_type = ds.get('type', '?')
    return getattr(ds_type, '__name__', str(ds_type)).split('.')[-1]


def dataset_type_names(dataset_cfg) -> List[str]:
    """Type names (without scope) of the leaf datasets of a (possibly wrapped) dataset
    config, e.g. ``['CityscapesDataset']``."""
    return [_type_name(ds) for ds in _datasets(dataset_cfg)]


def _is_cityscapes(ds: dict) -> bool:
    return _type_name(ds) == 'CityscapesDataset'


def _first(folder: str, suffix: str) -> Optional[Path]:
    """The first file under ``folder`` (recursively) whose name ends with ``suffix``."""
    return next(Path(folder).rglob(f'*{suffix}'), None)


def _cityscapes_dirs(ds: dict) -> Tuple[str, str, str]:
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


def cityscapes_problems(cfg, loaders=('train_dataloader', 'val_dataloader',
                                      'test_dataloader')) -> List[str]:
    """What is wrong with the existing folders of the config's Cityscapes datasets.

    An image folder with no ``*_leftImg8bit.png`` in it, and a label folder with no
    ``*_gtFine_labelTrainIds.png`` (polygons not converted yet, or no gtFine at all).
    Folders that do not exist are :func:`missing_data_files`' business.

    Args:
        cfg (Config): A training or test config.
        loaders (Sequence[str]): The dataloaders to check.

    Returns:
        list[str]: One message per problem (with the loaders it affects), saying what
        was found and what to run; empty when every folder looks usable.
    """
    problems: Dict[str, List[str]] = {}  # message -> loaders, in order of discovery
    for loader, ds in loader_datasets(cfg, loaders):
        if not _is_cityscapes(ds):
            continue
        img_dir, seg_dir, cs_root = _cityscapes_dirs(ds)
        img_suffix = ds.get('img_suffix', CITYSCAPES_IMG_SUFFIX)
        seg_suffix = ds.get('seg_map_suffix', CITYSCAPES_SEG_MAP_SUFFIX)
        convert = CONVERT_COMMAND.format(root=cs_root)
        message = None
        if osp.isdir(img_dir) and _first(img_dir, img_suffix) is None:
            message = (
                f'no *{img_suffix} images under {img_dir}: mmseg would find nothing '
                'to train or test on. Unpack leftImg8bit_trainvaltest.zip into '
                f'{cs_root} (leftImg8bit/<split>/<city>/*{img_suffix}).')
        elif osp.isdir(seg_dir) and _first(seg_dir, seg_suffix) is None:
            if _first(seg_dir, POLYGON_SUFFIX) is not None:
                message = (
                    f'{seg_dir} has Cityscapes polygons (*{POLYGON_SUFFIX}) but no '
                    f'*{seg_suffix} label maps: the polygons are not converted yet. '
                    f'Run `{convert}` once to write them.')
            else:
                message = (
                    f'no *{seg_suffix} label maps (nor *{POLYGON_SUFFIX} polygons '
                    f'to make them from) under {seg_dir}. Unpack '
                    f'gtFine_trainvaltest.zip into {cs_root}, then run `{convert}`.')
        if message is not None:
            problems.setdefault(message, []).append(loader)
    return [f'{", ".join(names)}: {message}' for message, names in problems.items()]


def check_data_files(cfg, loaders=('train_dataloader', 'val_dataloader',
                                   'test_dataloader'), validate: bool = True) -> None:
    """Raise :class:`DatasetNotFoundError` naming every missing path and how to get it.

    Checks that the annotation files and image folders of the loaders' datasets exist,
    then (for Cityscapes) that the folders hold images and converted label maps, then
    (``validate``) their content under the config's ``data_check`` policy
    (:func:`mobilenet_tasks.datasets.validation.validate_datasets`: raises
    :class:`BadDataError` under ``policy='fail'``, the default; under ``'skip'`` changes
    ``cfg`` to leave the bad items out).

    Args:
        cfg (Config): A training or test config.
        loaders (Sequence[str]): The dataloaders to check.
        validate (bool): Also check the content (files, boxes, categories, labels).
    """
    missing = missing_data_files(cfg, loaders)
    if missing:
        lines = [f'  {loader}: {path} ({ds_type})' for loader, ds_type, path in missing]
        types = sorted({ds_type.split('.')[-1] for _, ds_type, _ in missing})
        advice = [HOW_TO_GET[t] for t in types if t in HOW_TO_GET]
        raise DatasetNotFoundError(
            'The dataset this config trains or tests on is missing. Looked for:\n' +
            '\n'.join(lines) + '\n' + '\n'.join(advice + [DEMO_HINT]))
    problems = cityscapes_problems(cfg, loaders)
    if problems:
        raise DatasetNotFoundError(
            'The Cityscapes dataset this config trains or tests on is incomplete:\n' +
            '\n'.join(f'  {problem}' for problem in problems) + '\n' + DEMO_HINT)
    if validate:
        from .validation import validate_datasets  # imports this module
        validate_datasets(cfg, loaders)


def cityscapes_label_ids_path(seg_map_path: str) -> str:
    """The ``*_gtFine_labelIds.png`` next to a ``*_gtFine_labelTrainIds.png``, as mmseg's
    CityscapesMetric names it."""
    return seg_map_path.replace('labelTrainIds.png', 'labelIds.png')


def cityscapes_instance_ids_path(label_ids_path: str) -> str:
    """The ``*_gtFine_instanceIds.png`` cityscapesscripts reads next to a labelIds
    map."""
    return label_ids_path.replace('labelIds', 'instanceIds')


def label_ids_missing_message(path: str, cs_root: Optional[str] = None) -> str:
    """Why cityscapesscripts' evaluation cannot run without ``path``, and the fix."""
    if cs_root is None:  # <root>/gtFine/<split>/<city>/<file>
        cs_root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(path))))
    return (
        f'{path} does not exist. cityscapesscripts\' evaluation (--cityscapes-eval, '
        'CityscapesMetric) reads the label-id maps *_gtFine_labelIds.png and '
        '*_gtFine_instanceIds.png next to the *_gtFine_labelTrainIds.png. The official '
        'gtFine_trainvaltest.zip has them; for a tree made from polygons alone (such as '
        'the demo dataset) write them with `' + CONVERT_COMMAND.format(root=cs_root) +
        ' --label-ids`.')


def check_cityscapes_eval_files(cfg, loaders: Sequence[str] = ('test_dataloader', ),
                                instance_ids: bool = True) -> None:
    """Raise :class:`DatasetNotFoundError` unless cityscapesscripts' evaluation can run.

    It compares predictions with ``*_gtFine_labelIds.png`` (and, for its instance-level
    scores, ``*_gtFine_instanceIds.png``) next to each ``*_gtFine_labelTrainIds.png``
    of the loaders' Cityscapes datasets. Stops at the first one missing.

    Args:
        cfg (Config): A test config whose loaders hold Cityscapes datasets.
        loaders (Sequence[str]): The dataloaders to check.
        instance_ids (bool): Also require the instanceIds maps.
    """
    for loader, ds in loader_datasets(cfg, loaders):
        if not _is_cityscapes(ds):
            continue
        _, seg_dir, cs_root = _cityscapes_dirs(ds)
        seg_suffix = ds.get('seg_map_suffix', CITYSCAPES_SEG_MAP_SUFFIX)
        for seg_map in Path(seg_dir).rglob(f'*{seg_suffix}'):
            label_ids = cityscapes_label_ids_path(str(seg_map))
            needed = [label_ids]
            if instance_ids:
                needed.append(cityscapes_instance_ids_path(label_ids))
            for path in needed:
                if not osp.isfile(path):
                    raise DatasetNotFoundError(
                        f'{loader}: ' + label_ids_missing_message(path, cs_root))
