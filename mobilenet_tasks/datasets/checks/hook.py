""":class:`DataCheckHook`: what the data check skipped, in the run's log and message
hub."""
from typing import Sequence

from mmengine.hooks import Hook

from ...registry import HOOKS
from .wrapper import CheckedDataset

__all__ = ['DataCheckHook']


@HOOKS.register_module()
class DataCheckHook(Hook):
    """Writes what the data check skipped (and its notes) into the run's log, and the
    count into the message hub as ``data_check/skipped``; then, every ``interval``
    iterations and at the end, the samples :class:`CheckedDataset` skipped at run time
    (``data_check/runtime_skipped``) when there are new ones."""
    priority = 'VERY_LOW'

    def __init__(self, lines: Sequence[str] = (), skipped: int = 0,
                 interval: int = 50):
        self.lines = list(lines)
        self.skipped = int(skipped)
        self.interval = interval
        self._reported = 0

    def before_run(self, runner) -> None:
        runner.message_hub.update_info('data_check/skipped', self.skipped)
        if not self.lines:
            return
        head = (f'data_check: skipped {self.skipped} bad items' if self.skipped else
                'data_check: no faults')
        runner.logger.warning('\n'.join([head] + self.lines))

    def _runtime(self, runner) -> None:
        dataset = getattr(getattr(runner, 'train_dataloader', None), 'dataset', None)
        if not isinstance(dataset, CheckedDataset):
            return
        count = dataset.skipped
        runner.message_hub.update_info('data_check/runtime_skipped', count)
        if count > self._reported:
            self._reported = count
            runner.logger.warning(
                f'data_check: {count} training samples failed to load at run time and '
                'were replaced by others (the warnings above name them)')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.every_n_train_iters(runner, self.interval):
            self._runtime(runner)

    def after_train(self, runner) -> None:
        self._runtime(runner)
