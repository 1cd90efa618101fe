"""Saving, loading and resuming mmengine checkpoints on torch >= 2.6 (weights_only)."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mobilenet_tasks.utils.checkpoint import (allow_mmengine_checkpoints,
                                               mmengine_checkpoint_globals)

ROOT = Path(__file__).resolve().parents[2]


def _message_hub_checkpoint(path):
    """What mmengine's Runner saves: tensors plus HistoryBuffers of numpy arrays."""
    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(np.float64(0.25))
    torch.save({
        'meta': dict(epoch=1, seed=np.int64(3)),
        'state_dict': {'w': torch.ones(2)},
        'message_hub': dict(log_scalars={'train/loss': buffer}),
    }, path)


def test_runner_style_checkpoint_needs_the_allow_list(tmp_path):
    path = tmp_path / 'ckpt.pth'
    _message_hub_checkpoint(path)
    torch.serialization.clear_safe_globals()
    try:
        # upstream behaviour (mmengine #1655): weights_only loading refuses it
        with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
            torch.load(path)
    finally:
        import mobilenet_tasks.utils.checkpoint as ckpt
        ckpt._REGISTERED = False
        allow_mmengine_checkpoints()
    loaded = torch.load(path)
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 0.375


class _Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


class _SneakyGetattr:
    """Pickles as getattr(HistoryBuffer, '__init__'): the first step of an escape."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize('payload, message', [
    (_Evil(), 'system'),
    (_SneakyGetattr(), 'refusing getattr'),
])
def test_other_globals_stay_refused(tmp_path, payload, message):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': payload}, path)
    with pytest.raises(pickle.UnpicklingError, match=message):
        torch.load(path)


def test_allow_list_is_narrow():
    names = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
             for g in mmengine_checkpoint_globals()}
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in names
    assert 'builtins.getattr' in names  # the restricted stand-in, not the real one
    assert all(g[0] is not getattr for g in mmengine_checkpoint_globals()
               if isinstance(g, tuple))
    assert not any(n.startswith(('os.', 'subprocess.', 'posix.')) for n in names)


CONFIG = """
_base_ = '{root}/configs/classification/mobilenet-v3-small_8xb128_in1k.py'
model = dict(head=dict(num_classes=2, topk=(1, )))
data_preprocessor = dict(num_classes=2)
pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=32),
            dict(type='PackInputs')]
_loader = dict(batch_size=4, num_workers=0, persistent_workers=False,
               dataset=dict(_delete_=True, type='CustomDataset',
                            data_root='{data}', pipeline=pipeline))
train_dataloader = _loader
val_dataloader = _loader
test_dataloader = _loader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=10)
param_scheduler = []
randomness = dict(seed=0, deterministic=True)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
"""


def _run(*args, cwd):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_resume_test_through_the_tools(tmp_path):
    """tools/train.py saves, --resume continues from it, tools/test.py evaluates it."""
    rng = np.random.default_rng(0)
    for cls in ('a', 'b'):
        (tmp_path / 'data' / cls).mkdir(parents=True)
        for i in range(4):
            img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / 'data' / cls / f'{i}.png'), img)
    config = tmp_path / 'cfg.py'
    config.write_text(CONFIG.format(root=ROOT, data=tmp_path / 'data'))
    work = tmp_path / 'work'
    _run(str(ROOT / 'tools/train.py'), str(config), '--work-dir', str(work),
         cwd=tmp_path)
    assert (work / 'epoch_1.pth').is_file()
    log = _run(str(ROOT / 'tools/train.py'), str(config), '--work-dir', str(work),
               '--resume', '--cfg-options', 'train_cfg.max_epochs=2', cwd=tmp_path)
    assert 'resumed epoch: 1, iter: 2' in log
    first = torch.load(work / 'epoch_1.pth')
    second = torch.load(work / 'epoch_2.pth')
    assert second['meta']['epoch'] == 2 and second['meta']['iter'] == 4
    key = 'backbone.layers.5.project_conv.conv.weight'
    assert not torch.equal(first['state_dict'][key], second['state_dict'][key])
    out = tmp_path / 'preds.pkl'
    log = _run(str(ROOT / 'tools/test.py'), str(config), str(work / 'epoch_2.pth'),
               '--work-dir', str(work), '--out', str(out), cwd=tmp_path)
    assert "'accuracy/top1'" in log
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8
