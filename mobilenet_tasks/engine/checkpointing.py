"""Resumable training: crash-safe checkpoints and exact resumption of random streams.

``tools/train.py`` enables both for every config (:func:`enable_safe_resume`):

* :class:`AtomicCheckpointHook` replaces mmengine's ``CheckpointHook``. mmengine 0.10.7
  writes a checkpoint straight to its final name, rewrites ``last_checkpoint`` in place,
  and, with ``max_keep_ckpts``, deletes the previous checkpoint *before* writing the new
  one. A crash while saving therefore leaves a truncated ``iter_N.pth`` and, with
  ``max_keep_ckpts=1`` (our demo configs), no good checkpoint at all, while
  ``last_checkpoint`` names a deleted file. None of it is configurable (the write order
  lives in ``CheckpointHook._save_checkpoint_with_step``), hence the subclass: the
  checkpoint is written to a hidden temporary file in the same folder, fsync'ed and
  renamed over its final name (``os.replace`` is atomic on POSIX and Windows), then
  ``last_checkpoint`` is replaced the same way, and only then are old checkpoints
  removed. Whatever the moment of a crash, ``last_checkpoint`` names a complete file.
* :class:`RNGStateHook` makes ``--resume`` continue the random streams of the run it
  resumes. mmengine saves no random state: a resumed run reseeds python's ``random``,
  numpy and torch from the config seed, so its augmentations (``RandomFlip``,
  ``RandomCrop`` ... draw from numpy and ``random``) and its dropout draw different
  numbers from those the uninterrupted run drew at the same iteration. The hook saves
  the three generators (plus CUDA's) in the checkpoint and restores them just before
  the first batch after the resume point is fetched (after ``IterBasedTrainLoop`` has
  replayed the dataloader up to that point, which also brings the sampler and the
  dataloader workers' own generators to where they were). It also keeps validation
  from consuming the training streams (they are snapshotted before validation and put
  back after), since a checkpoint is written before the validation of the same
  iteration and the resumed run does not repeat that validation.

With ``randomness=dict(seed=..., deterministic=True)`` on a CPU, a run killed at any
point and resumed from its last checkpoint ends with the same weights (bit for bit) and
metrics as a run that was never stopped (``tests/test_tools/test_resume.py``).
Limitations: in distributed runs only rank 0's generators are saved (every rank gets
them back); ``save_best`` checkpoints and non-local storage backends keep mmengine's
plain writes.
"""
import os
import os.path as osp
import random
import zipfile
from typing import Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook, Hook

from mobilenet_tasks.registry import HOOKS

RNG_STATE_KEY = 'rng_state'
PARTIAL_SUFFIX = '.partial'


# ---------------------------------------------------------------- atomic file writes
def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(tmp_path: str, final_path: str) -> None:
    """Flush ``tmp_path`` to disk and atomically rename it to ``final_path``."""
    with open(tmp_path, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp_path, final_path)
    _fsync_dir(osp.dirname(osp.abspath(final_path)))


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new text, never a
    mix or an empty file."""
    tmp_path = osp.join(osp.dirname(osp.abspath(path)),
                        f'.{osp.basename(path)}{PARTIAL_SUFFIX}')
    with open(tmp_path, 'w') as f:
        f.write(text)
    commit_file(tmp_path, path)


def check_checkpoint_file(path: str) -> Optional[str]:
    """Why ``path`` is not a complete torch checkpoint, or None if it is.

    torch (>= 1.6) saves zip archives; a file cut short loses the archive's central
    directory (at its end), and every member's CRC is checked.
    """
    if not osp.isfile(path):
        return 'no such file'
    if not zipfile.is_zipfile(path):
        return 'not a complete torch checkpoint (truncated or not a zip archive)'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f'corrupt checkpoint archive ({error})'
    if bad is not None:
        return f'corrupt checkpoint archive (bad CRC in {bad})'
    return None


# ---------------------------------------------------------------- checkpoint hook
@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` whose checkpoints are never left half-written.

    Same arguments and files as ``CheckpointHook``; for a local ``out_dir`` the order of
    a save becomes: write ``.iter_N.pth.partial``, fsync, rename it to ``iter_N.pth``,
    replace ``last_checkpoint`` atomically, then delete the checkpoints beyond
    ``max_keep_ckpts``. Leftover ``.partial`` files of a crashed save are removed when
    training starts. Other storage backends (no atomic rename) keep mmengine's order.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._is_local() and is_main_process() and osp.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):
                if name.startswith('.') and name.endswith(PARTIAL_SUFFIX):
                    os.remove(osp.join(self.out_dir, name))

    def _is_local(self) -> bool:
        return (self.file_client_args is None
                and isinstance(getattr(self, 'file_backend', None), LocalBackend))

    def _remove_checkpoint(self, step) -> None:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed saves directories
            self.file_backend.rmtree(path)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)

        # The bookkeeping of CheckpointHook, but the outdated checkpoints are removed
        # after the new one is complete and named by last_checkpoint.
        outdated = []
        if self.max_keep_ckpts > 0:
            if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
                if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                    outdated.append(self.keep_ckpt_ids.popleft())
                self.keep_ckpt_ids.append(step)
                runner.message_hub.update_info('keep_ckpt_ids',
                                               list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        partial_name = f'.{ckpt_filename}{PARTIAL_SUFFIX}'
        runner.save_checkpoint(
            self.out_dir,
            partial_name,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        if not is_main_process():
            return
        commit_file(osp.join(self.out_dir, partial_name), self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old_step in outdated:
            if old_step != step:
                self._remove_checkpoint(old_step)


# ---------------------------------------------------------------- random states
def get_rng_state() -> dict:
    """python ``random``, numpy and torch (CPU, and CUDA if in use) generator states,
    in types ``torch.load(weights_only=True)`` accepts (no numpy arrays)."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = dict(
        python=random.getstate(),
        numpy=(str(name), key.tolist(), int(pos), int(has_gauss), float(gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state['numpy']
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'].cpu())
    if state.get('cuda') is not None and torch.cuda.is_available():
        states = [s.cpu() for s in state['cuda']]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


class _RestoreAfterSkip:
    """Wraps ``IterBasedTrainLoop.dataloader_iterator``: lets the loop replay the
    ``skip`` batches trained before the checkpoint, then restores the saved generators
    just before the next batch is fetched, and takes itself out of the loop."""

    def __init__(self, loop, iterator, skip: int, state: dict):
        self._loop, self._iterator = loop, iterator
        self._skip, self._state = skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
            return next(self._iterator)
        set_rng_state(self._state)
        self._loop.dataloader_iterator = self._iterator
        return next(self._iterator)

    def __getattr__(self, name):
        if name == '_iterator':  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._iterator, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves the random generators in checkpoints and restores them on resume.

    See the module docstring. Loading a checkpoint for fine-tuning (``load_from``
    without ``resume``, the loop at iteration 0) leaves the generators alone.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._loaded = None  # the loaded checkpoint's states; False: it had none
        self._at_next_epoch: Optional[dict] = None
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_STATE_KEY] = get_rng_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(RNG_STATE_KEY, False)

    def before_train(self, runner) -> None:
        state, self._loaded = self._loaded, None
        if state is None or (runner.iter == 0 and runner.epoch == 0):
            return
        if state is False:
            runner.logger.warning(
                'The resumed checkpoint holds no random generator states (saved '
                'without RNGStateHook): the resumed run may not reproduce an '
                'uninterrupted one exactly.')
            return
        runner.logger.info('Restoring the random generator states saved in the '
                           'checkpoint (RNGStateHook).')
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator') and runner.iter > 0:
            # IterBasedTrainLoop advances the iterator runner.iter times first
            loop.dataloader_iterator = _RestoreAfterSkip(
                loop, loop.dataloader_iterator, runner.iter, state)
        else:  # EpochBasedTrainLoop: the next epoch starts where the checkpoint was
            self._at_next_epoch = state

    def before_train_epoch(self, runner) -> None:
        if self._at_next_epoch is not None:
            set_rng_state(self._at_next_epoch)
            self._at_next_epoch = None

    def before_val(self, runner) -> None:
        self._before_val = get_rng_state()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_state(self._before_val)
            self._before_val = None


# ---------------------------------------------------------------- config
_PLAIN_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')


def enable_safe_resume(cfg) -> None:
    """Use :class:`AtomicCheckpointHook` and :class:`RNGStateHook` in ``cfg``.

    The checkpoint hook is swapped only if it is mmengine's own (a config's custom
    checkpoint hook is left alone); ``default_hooks.checkpoint=None`` stays disabled.
    """
    default_hooks = cfg.get('default_hooks')
    if default_hooks is None:
        cfg.default_hooks = default_hooks = dict()
    if 'checkpoint' not in default_hooks:
        # what Runner would add: CheckpointHook(interval=1)
        default_hooks['checkpoint'] = dict(type='CheckpointHook', interval=1)
    checkpoint = default_hooks['checkpoint']
    if isinstance(checkpoint, dict) and checkpoint.get('type') in _PLAIN_CHECKPOINT_HOOKS:
        checkpoint['type'] = 'mobilenet_tasks.AtomicCheckpointHook'
    custom_hooks = list(cfg.get('custom_hooks') or [])
    if not any(isinstance(h, dict) and str(h.get('type', '')).endswith('RNGStateHook')
               for h in custom_hooks):
        custom_hooks.append(dict(type='mobilenet_tasks.RNGStateHook'))
    cfg.custom_hooks = custom_hooks
