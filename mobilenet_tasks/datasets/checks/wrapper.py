""":class:`CheckedDataset`: the train loader's dataset, wrapped so that a sample that
fails to load at run time stops the run naming its file, or is skipped and counted."""
import multiprocessing
import warnings
from multiprocessing.context import assert_spawning

from mmengine.registry import DATASETS as ROOT_DATASETS

from ...registry import DATASETS
from .errors import BadDataError

__all__ = ['CheckedDataset']


@DATASETS.register_module()
class CheckedDataset:
    """Wraps a dataset: a sample whose loading raises stops the run naming the file
    (``policy='fail'``), or is replaced by the next one, warned about and counted
    (``'skip'``; at most ``max_skips`` in the run). Everything else is the wrapped
    dataset's (``metainfo``, ``get_data_info``, ...)."""

    def __init__(self, dataset, policy: str = 'fail', max_skips: int = 100):
        if isinstance(dataset, dict):
            dataset = ROOT_DATASETS.build(dataset)  # in the run's default scope
        self.dataset = dataset
        self.policy = policy
        self.max_skips = max_skips
        self._skipped = multiprocessing.Value('i', 0)  # shared with (forked) workers

    @property
    def skipped(self) -> int:
        return self._skipped.value

    def __getattr__(self, name):
        if name in ('dataset', '_skipped'):
            raise AttributeError(name)  # while unpickling
        return getattr(self.dataset, name)

    def __getstate__(self):
        state = self.__dict__.copy()
        try:
            assert_spawning(self)  # to a spawned worker: share the counter
        except RuntimeError:  # a plain copy: its own counter
            state['_skipped'] = self._skipped.value
        return state

    def __setstate__(self, state):
        if isinstance(state['_skipped'], int):
            state['_skipped'] = multiprocessing.Value('i', state['_skipped'])
        self.__dict__.update(state)

    def __len__(self):
        return len(self.dataset)

    def _name(self, idx: int) -> str:
        try:
            info = self.dataset.get_data_info(idx)
            return str(info.get('img_path') or info.get('seg_map_path') or idx)
        except Exception:  # noqa: B902 - only for the message
            return f'sample {idx}'

    def __getitem__(self, idx: int):
        tries = 0
        while True:
            try:
                return self.dataset[idx]
            except Exception as error:  # noqa: B902 - any fault of one sample
                name = self._name(idx)
                message = f'{name}: {type(error).__name__}: {error}'.strip()
                if self.policy != 'skip':
                    raise BadDataError(
                        f'Bad data at run time: {message}. Fix or remove the file, or '
                        "set data_check = dict(policy='skip') to train without it."
                    ) from error
                with self._skipped.get_lock():
                    self._skipped.value += 1
                    count = self._skipped.value
                if count > self.max_skips or tries >= len(self):
                    raise BadDataError(
                        f'Bad data at run time: {count} samples failed to load (more '
                        f'than data_check.max_runtime_skips={self.max_skips}); the last: '
                        f'{message}') from error
                warnings.warn(f'data_check: skipped at run time {message}')
                tries += 1
                idx = (idx + 1) % len(self)
