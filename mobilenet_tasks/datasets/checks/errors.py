"""The errors of the data checks, and :class:`Fault`, one bad item they found."""
from typing import NamedTuple, Optional, Tuple

__all__ = ['DatasetNotFoundError', 'BadDataError', 'Fault']


class DatasetNotFoundError(FileNotFoundError):
    """A dataset named by a config is not where the config says, or is incomplete."""


class BadDataError(DatasetNotFoundError):
    """The dataset is there but holds bad data (corrupt or missing files, bad boxes,
    unknown categories, label values outside the classes), found under
    ``data_check.policy='fail'``: see :mod:`mobilenet_tasks.datasets.checks`.

    A subclass of :class:`DatasetNotFoundError` so that the tools, which stop with the
    message of that error, stop with this one too.
    """


class Fault(NamedTuple):
    """One bad item: the file it concerns, what is wrong, and what to drop for it."""
    file: str
    fault: str
    #: ``('image', id)``, ``('annotation', id)``, ``('name', name)``, or ``None`` when
    #: nothing can be dropped (the whole file is unusable).
    drop: Optional[Tuple[str, object]] = None

    def __str__(self):
        return f'{self.file}: {self.fault}'
