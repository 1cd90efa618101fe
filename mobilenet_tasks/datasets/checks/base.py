"""What :func:`~.validate.validate_datasets` asks of the checker of a dataset type.

A checker is one row of :data:`~.validate.TABLE` (dataset type -> checker); a new
dataset type is one module with a :class:`DatasetChecker` subclass and one row there.
"""
import os.path as osp
from typing import List, NamedTuple, Optional, Tuple

from .errors import Fault
from .policy import DataCheckPolicy

__all__ = ['DataCheck', 'DatasetChecker']


class DataCheck(NamedTuple):
    """The result of checking the data of one dataset config."""
    faults: List[Fault]
    #: Not faults: sentences for the log.
    notes: List[str]
    #: What :meth:`DatasetChecker.clean` needs besides the faults.
    data: object = None


class DatasetChecker:
    """Checks the data of the dataset configs of one type and, under
    ``policy='skip'``, writes a copy without the bad items and points the config at it.

    :func:`~.validate.validate_datasets` calls :meth:`key`, then :meth:`check` once per
    key (loaders sharing the data are checked once), and under ``'skip'``, for a check
    with faults each of which can be dropped (``Fault.drop`` set), :meth:`clean` once
    per key and :meth:`point` for each dataset config of the key. :meth:`key` and
    :meth:`check` are also given the whole config (its ``default_scope``, its model).
    """

    def claims(self, ds: dict) -> bool:
        """Whether this checker checks ``ds``, a dataset of a type not in the table
        (e.g. a dataset of another type in this checker's file format)."""
        return False

    def key(self, ds: dict, cfg=None) -> Optional[Tuple]:
        """What identifies the data ``ds`` reads, or None when there is nothing to
        check."""
        raise NotImplementedError

    def check(self, ds: dict, policy: DataCheckPolicy, cfg=None):
        """Check the data; returns a :class:`DataCheck` (or another result with
        ``faults`` and ``notes``)."""
        raise NotImplementedError

    def clean(self, ds: dict, check, loader: str, out_dir: str) -> Tuple[str, str]:
        """Write a copy of the data of ``ds`` without the items of ``check.faults``
        into ``out_dir`` (it exists); returns its path and the log line saying what was
        skipped (it follows ``'<loader>: '`` and precedes the faults)."""
        raise NotImplementedError

    def point(self, cfg, ds: dict, cleaned: str) -> None:
        """Point the config (the dataset config ``ds`` and whatever else reads the same
        data) at the cleaned copy."""
        ds['ann_file'] = cleaned

    @staticmethod
    def out_file(out_dir: str, loader: str, name: str) -> str:
        """The cleaned copy's path: ``<out_dir>/<loader>_<basename of name>``."""
        return osp.join(out_dir, f'{loader}_{osp.basename(name)}')
