"""The content check of a config's datasets under its ``data_check`` policy
(:func:`validate_datasets`), with :data:`TABLE`, the checker of each dataset class."""
import importlib
import os
import os.path as osp
import sys
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

from .base import DatasetChecker
from .cityscapes import CityscapesChecker
from .coco import CocoChecker
from .errors import BadDataError, Fault
from .layout import dataset_class, loader_datasets, type_name
from .policy import data_check_policy
from .segmentation import SegmentationChecker

__all__ = ['MAX_LISTED', 'TABLE', 'checker_for', 'validate_datasets']

MAX_LISTED = 20  # faults listed in a message; the rest are counted

#: Dataset base class (``module.Name``) -> the checker of it and its subclasses (None:
#: not checked). A dataset's class, looked up in the config's default scope, gets the
#: row of the nearest class of its MRO; a type that cannot be looked up, the row whose
#: class name is its name; a class of no row, the first checker that
#: :meth:`~.base.DatasetChecker.claims` it, if any.
TABLE: Dict[str, Optional[DatasetChecker]] = {
    'mmseg.datasets.CityscapesDataset': CityscapesChecker(),
    'mmseg.datasets.BaseSegDataset': SegmentationChecker(),
    'mmdet.datasets.CocoDataset': CocoChecker(),
    # other formats than COCO detection: images without file_name, panoptic segments
    'mmdet.datasets.LVISV05Dataset': None,
    'mmdet.datasets.CocoPanopticDataset': None,
}


def _base(path: str) -> Optional[type]:
    """The class of a TABLE row, when its package is imported (a dataset class of it
    imported it; nothing is imported here)."""
    module, _, name = path.rpartition('.')
    if module not in sys.modules:
        return None
    return getattr(importlib.import_module(module), name, None)


def checker_for(ds: dict, scope: Optional[str] = None) -> Optional[DatasetChecker]:
    """The checker of a leaf dataset config (its type looked up in the registry of
    ``scope``, the config's ``default_scope``), or None when none checks it."""
    cls = dataset_class(ds, scope)
    if cls is not None:
        bases = {_base(path): checker for path, checker in TABLE.items()}
        for klass in cls.__mro__:
            if klass in bases:
                return bases[klass]
    else:
        rows = [c for path, c in TABLE.items() if path.split('.')[-1] == type_name(ds)]
        if rows:
            return rows[0]
    return next((c for c in TABLE.values() if c is not None and c.claims(ds)), None)


def _summary(faults: List[Fault], limit: int = MAX_LISTED) -> List[str]:
    lines = [f'  {f}' for f in faults[:limit]]
    if len(faults) > limit:
        lines.append(f'  ... and {len(faults) - limit} more')
    return lines


def validate_datasets(cfg, loaders: Sequence[str] = ('train_dataloader',
                                                     'val_dataloader',
                                                     'test_dataloader')) -> List[str]:
    """Check the loaders' data under the config's ``data_check`` policy (see
    :mod:`mobilenet_tasks.datasets.checks`).

    Under ``'skip'`` the config is changed in place to use the cleaned copies and gets
    a :class:`~.hook.DataCheckHook`.

    Returns:
        list[str]: The lines logged (skipped items and notes).

    Raises:
        BadDataError: Under ``'fail'``, listing every fault with its file; under any
            policy for a fault that cannot be skipped (an unreadable json, config
            classes missing from it).
    """
    policy = data_check_policy(cfg)
    if policy.policy == 'off':
        return []
    out_dir = osp.join(cfg.get('work_dir') or 'work_dirs', 'data_check')
    done: Dict[Tuple, object] = {}  # the same data in several loaders: checked once
    cleaned: Dict[Tuple, str] = {}  # ... and cleaned once
    fatal, faults_all, log, skipped = [], [], [], 0
    for loader, ds in loader_datasets(cfg, loaders):
        checker = checker_for(ds, cfg.get('default_scope'))
        key = checker.key(ds, cfg) if checker is not None else None
        if key is None:
            continue
        if key not in done:
            done[key] = checker.check(ds, policy, cfg)
        check = done[key]
        log += [f'{loader}: {note}' for note in check.notes]
        if not check.faults:
            continue
        faults_all += [(loader, f) for f in check.faults]
        unskippable = [f for f in check.faults if f.drop is None]
        if unskippable:
            fatal += [(loader, f) for f in unskippable]
            continue
        if policy.policy == 'skip':
            if key not in cleaned:  # once for loaders sharing the data
                os.makedirs(out_dir, exist_ok=True)
                cleaned[key], line = checker.clean(ds, check, loader, out_dir)
                skipped += len(check.faults)
                log.append(f'{loader}: {line}')
                log += _summary(check.faults)
            checker.point(cfg, ds, cleaned[key])
    if fatal or (faults_all and policy.policy == 'fail'):
        listed = fatal if fatal and policy.policy == 'skip' else faults_all
        loaders_of: Dict[Fault, List[str]] = {}  # val and test often share data
        for loader, fault in listed:
            loaders_of.setdefault(fault, []).append(loader)
        groups: Dict[Tuple[str, ...], List[Fault]] = {}
        for fault, names in loaders_of.items():
            groups.setdefault(tuple(names), []).append(fault)
        lines = []
        for names, faults in groups.items():
            lines.append(f'{", ".join(names)}: {len(faults)} fault'
                         f'{"s" if len(faults) != 1 else ""}')
            lines += _summary(faults)
        advice = []
        if fatal:
            advice.append('Unreadable annotation files, malformed entries, classes '
                          'missing from the json or differing from the model\'s, and '
                          'samples of a dataset class that lists its own files cannot '
                          'be skipped: fix the file or the config.')
        if len(listed) > len(fatal):
            advice.append('Fix or remove the other files, or set data_check = '
                          'dict(policy=\'skip\') in the config (or --cfg-options '
                          'data_check.policy=skip) to run without the bad items.')
        raise BadDataError('Bad data in the datasets of this config:\n' +
                           '\n'.join(lines + advice))
    if skipped:
        warnings.warn('data_check: ' + '\n'.join(log), stacklevel=2)
    train = cfg.get('train_dataloader') if 'train_dataloader' in loaders else None
    wrapped = False
    if train and isinstance(train.get('dataset'), dict):
        if type_name(train['dataset']) != 'CheckedDataset':
            train['dataset'] = dict(type='mobilenet_tasks.CheckedDataset',
                                    dataset=train['dataset'], policy=policy.policy,
                                    max_skips=policy.max_runtime_skips)
        wrapped = True
    if log or wrapped:
        hooks = list(cfg.get('custom_hooks') or [])
        hooks = [h for h in hooks if str(h.get('type', '')).split('.')[-1]
                 != 'DataCheckHook']
        hooks.append(dict(type='mobilenet_tasks.DataCheckHook', lines=log,
                          skipped=skipped))
        cfg['custom_hooks'] = hooks
    return log
