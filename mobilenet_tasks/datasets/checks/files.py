"""Stop at once, with directions, when a config's dataset is not on disk.

Each missing path is named with the loader and the config key that set it. How to get
COCO or Cityscapes (:data:`HOW_TO_GET`) is said only for a path at the dataset's
standard place (:data:`STANDARD`: ``data/coco``, ``data/cityscapes`` as the shipped
configs set them, or their layout under another ``data_root`` when none of the dataset
is there); for a path a user set, what to fix instead. Besides missing annotation files
and image folders (any dataset), a Cityscapes tree is
checked for what mmseg would otherwise stumble over later: an image folder without
images (mmseg would build an empty dataset) and a gtFine folder whose polygons are not
converted to ``*_gtFine_labelTrainIds.png`` yet. The checks glob with early exit, so
they cost milliseconds on the real dataset. :func:`check_data_files` then checks the
content (:func:`~.validate.validate_datasets`).
"""
import os.path as osp
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from .errors import DatasetNotFoundError
from .layout import (CITYSCAPES_IMG_SUFFIX, CITYSCAPES_SEG_MAP_SUFFIX, CONVERT_COMMAND,
                     POLYGON_SUFFIX, cityscapes_dirs, cityscapes_instance_ids_path,
                     cityscapes_label_ids_path, dataset_keys, is_cityscapes,
                     loader_datasets, type_name)
from .validate import validate_datasets

__all__ = [
    'HOW_TO_GET', 'STANDARD', 'DEMO_HINT', 'MissingPath', 'missing_data_files',
    'missing_paths', 'missing_message', 'cityscapes_problems', 'check_data_files',
    'label_ids_missing_message', 'check_cityscapes_eval_files'
]

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
#: Where each dataset of :data:`HOW_TO_GET` is by default: the shipped configs'
#: ``data_root``, and the ``ann_file`` / ``data_prefix`` values of its layout below it.
STANDARD = {
    'CocoDataset': ('data/coco', ('annotations/instances_train2017.json',
                                  'annotations/instances_val2017.json', 'train2017',
                                  'val2017')),
    'CityscapesDataset': ('data/cityscapes', tuple(
        f'{top}/{split}' for top in ('leftImg8bit', 'gtFine')
        for split in ('train', 'val', 'test'))),
}
DEMO_HINT = ('To try the project without it, `make demo` trains and evaluates on the '
             'built-in demo dataset, which the project generates.')


class MissingPath(NamedTuple):
    """A path of a dataset config that does not exist."""
    loader: str
    where: str  # the dataset config's key, e.g. 'val_dataloader.dataset'
    key: str  # the key in it that sets the path, e.g. 'ann_file', 'data_prefix.img'
    value: str  # as the config sets it
    data_root: str  # the dataset's (it is relative to it), '' for none
    ds_type: str
    path: str  # absolute
    kind: Optional[str]  # the key of HOW_TO_GET of the dataset's type, if any


def _paths(cfg, loaders: Sequence[str]):
    """``(loader, dataset key, key, value, data_root, dataset config, absolute path)``
    of each
    annotation file and image/label folder of the loaders' datasets."""
    for loader in loaders:
        for where, ds in dataset_keys((cfg.get(loader) or {}).get('dataset'),
                                      f'{loader}.dataset'):
            root = ds.get('data_root') or ''
            prefix = ds.get('data_prefix') or {}
            paths = [('ann_file', ds['ann_file'])] if ds.get('ann_file') else []
            paths += [(f'data_prefix.{key}', prefix[key])
                      for key in ('img', 'img_path', 'seg_map_path') if prefix.get(key)]
            for key, path in paths:
                full = path if osp.isabs(path) else osp.join(root, path)
                yield loader, where, key, str(path), str(root), ds, osp.abspath(full)


def _kind(ds: dict) -> Optional[str]:
    return type_name(ds) if type_name(ds) in HOW_TO_GET else None


def missing_paths(cfg, loaders=('train_dataloader', 'val_dataloader',
                                'test_dataloader')) -> List[MissingPath]:
    """Each annotation file or image/label folder of the loaders' datasets that does
    not exist."""
    return [MissingPath(loader, where, key, value, root, str(ds.get('type', '?')),
                        full, _kind(ds))
            for loader, where, key, value, root, ds, full in _paths(cfg, loaders)
            if not osp.exists(full)]


def missing_data_files(cfg, loaders=('train_dataloader', 'val_dataloader',
                                     'test_dataloader')) -> List[Tuple[str, str, str]]:
    """``(loader, dataset type, path)`` for each annotation file or image folder of
    the config's datasets that does not exist."""
    return [(m.loader, m.ds_type, m.path) for m in missing_paths(cfg, loaders)]


def _is_standard(item: MissingPath, nothing_there: bool) -> bool:
    """Whether a missing path is at its dataset's standard place: under the shipped
    ``data_root``, or its layout under another one of which nothing exists."""
    if item.kind is None:
        return False
    root, layout = STANDARD[item.kind]
    if item.path.startswith(osp.abspath(root) + osp.sep):
        return True
    return nothing_there and item.value.rstrip('/') in layout


def missing_message(cfg, missing: List[MissingPath],
                    loaders: Sequence[str] = ()) -> str:
    """What :func:`check_data_files` says of the ``missing`` paths: each with the
    loader and the key that set it; how to get the dataset for those at its standard
    place, what to fix for the others."""
    existing = {_kind(ds) for *_, ds, full in _paths(cfg, loaders) if osp.exists(full)}
    lines, kinds, own = [], [], []
    for m in missing:
        standard = _is_standard(m, m.kind not in existing)
        if standard and m.kind not in kinds:
            kinds.append(m.kind)
        if not standard:
            own.append(m)
        root = (f' under data_root={m.data_root!r}'
                + ('' if osp.isdir(m.data_root) else ' (no such folder)')
                if m.data_root and not osp.isabs(m.value) else '')
        lines.append(f'  {m.loader}: {m.path} ({m.ds_type}), set by '
                     f'{m.where}.{m.key}={m.value!r}{root}')
    advice = []
    if own:
        fixes = list(dict.fromkeys(
            f'{m.where}.data_root=DIR' if m.data_root and not osp.isdir(m.data_root)
            else f'{m.where}.{m.key}=PATH' for m in own))
        advice.append(
            f'Fix {"this path" if len(own) == 1 else "these paths"} in the config or '
            f'with --cfg-options {" ".join(fixes)}, or put the data there.')
    missing_loaders = {m.loader for m in missing}
    if 'test_dataloader' in missing_loaders and 'val_dataloader' in loaders and \
            'val_dataloader' not in missing_loaders and cfg.get('val_dataloader'):
        advice.append(
            'val_dataloader\'s data is there, test_dataloader\'s is not: '
            '--cfg-options val_dataloader.* overrides do not reach test_dataloader '
            '(a config\'s test_dataloader = val_dataloader is a copy), and every '
            'loader\'s paths must exist: set test_dataloader.dataset too (and '
            'test_evaluator.ann_file, for COCO).')
    advice += [HOW_TO_GET[kind] for kind in kinds]
    if kinds:
        advice.append(DEMO_HINT)
    return ('The dataset this config trains or tests on is missing. Looked for:\n' +
            '\n'.join(lines + advice))


def _first(folder: str, suffix: str) -> Optional[Path]:
    """The first file under ``folder`` (recursively) whose name ends with ``suffix``."""
    return next(Path(folder).rglob(f'*{suffix}'), None)


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
        if not is_cityscapes(ds):
            continue
        img_dir, seg_dir, cs_root = cityscapes_dirs(ds)
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
    (:func:`~.validate.validate_datasets`: raises
    :class:`BadDataError` under ``policy='fail'``, the default; under ``'skip'`` changes
    ``cfg`` to leave the bad items out).

    Args:
        cfg (Config): A training or test config.
        loaders (Sequence[str]): The dataloaders to check.
        validate (bool): Also check the content (files, boxes, categories, labels).
    """
    missing = missing_paths(cfg, loaders)
    if missing:
        raise DatasetNotFoundError(missing_message(cfg, missing, loaders))
    problems = cityscapes_problems(cfg, loaders)
    if problems:
        raise DatasetNotFoundError(
            'The Cityscapes dataset this config trains or tests on is incomplete:\n' +
            '\n'.join(f'  {problem}' for problem in problems) + '\n' + DEMO_HINT)
    if validate:
        validate_datasets(cfg, loaders)


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
        if not is_cityscapes(ds):
            continue
        _, seg_dir, cs_root = cityscapes_dirs(ds)
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
