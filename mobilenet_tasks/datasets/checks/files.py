"""Stop at once, with directions, when a config's dataset is not on disk.

Besides missing annotation files and image folders (any dataset), a Cityscapes tree is
checked for what mmseg would otherwise stumble over later: an image folder without
images (mmseg would build an empty dataset) and a gtFine folder whose polygons are not
converted to ``*_gtFine_labelTrainIds.png`` yet. The checks glob with early exit, so
they cost milliseconds on the real dataset. :func:`check_data_files` then checks the
content (:func:`~.validate.validate_datasets`).
"""
import os.path as osp
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import DatasetNotFoundError
from .layout import (CITYSCAPES_IMG_SUFFIX, CITYSCAPES_SEG_MAP_SUFFIX, CONVERT_COMMAND,
                     POLYGON_SUFFIX, cityscapes_dirs, cityscapes_instance_ids_path,
                     cityscapes_label_ids_path, is_cityscapes, loader_datasets)
from .validate import validate_datasets

__all__ = [
    'HOW_TO_GET', 'DEMO_HINT', 'missing_data_files', 'cityscapes_problems',
    'check_data_files', 'label_ids_missing_message', 'check_cityscapes_eval_files'
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
DEMO_HINT = ('To try the project without it, `make demo` trains and evaluates on the '
             'built-in demo dataset, which the project generates.')


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
