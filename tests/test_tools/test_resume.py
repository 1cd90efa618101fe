"""Resuming through tools/train.py: a run killed at any point (SIGKILL between
checkpoints, or in the middle of writing one) continues with ``--resume`` and ends with
the same weights, optimizer state, losses and metrics as a run that was never stopped.

A tiny LR-ASPP (the demo config) on 4 generated 64x128 street scenes: numpy-driven
augmentation (RandomResize, RandomCrop, RandomFlip), a shuffling InfiniteSampler and
dropout in the head (torch's generator, which the dataloader replay of a plain mmengine
resume does not bring back: without RNGStateHook the resumed run ends with different
weights); 12 iterations, a checkpoint and a validation every 4, deterministic mode, one
data-loading process.
"""
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
from mobilenet_tasks.datasets.demo_cityscapes import make_demo_cityscapes

ROOT = Path(__file__).resolve().parents[2]
ITERS, INTERVAL = 12, 4

TINY = """
_base_ = '{root}/configs/lraspp_v3_large_demo.py'
data_root = '{data}/'
crop_size = (48, 48)
model = dict(data_preprocessor=dict(size=crop_size))
_train = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
          dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0),
               keep_ratio=True),
          dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
          dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
_test = [dict(type='LoadImageFromFile'),
         dict(type='Resize', scale=(128, 64), keep_ratio=True),
         dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=_train))
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=_test))
test_dataloader = val_dataloader
train_cfg = dict(max_iters={iters}, val_interval={interval})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                        end=6)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={interval}, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=True)
"""

# Runs tools/train.py with the checkpoint write of iteration CRASH_AT cut in half: the
# process kills itself (SIGKILL) after writing half the bytes, wherever they go.
CRASHING_TRAIN = """
import os, runpy, signal, sys
from mmengine.fileio.backends.local_backend import LocalBackend

_put = LocalBackend.put
def put(self, obj, filepath):
    if 'iter_{crash_at}.' in os.path.basename(str(filepath)):
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return _put(self, obj, filepath)
LocalBackend.put = put
sys.argv = [{train!r}] + sys.argv[1:]
runpy.run_path({train!r}, run_name='__main__')
"""


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
                PYTHONUNBUFFERED='1')


def _train(config, work, *extra, script=None, cwd):
    args = [sys.executable, str(script or ROOT / 'tools/train.py'), str(config),
            '--work-dir', str(work), *map(str, extra)]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=_env())
    return proc.returncode, proc.stdout + proc.stderr


def _last_val_metrics(log):
    lines = [line for line in log.splitlines() if 'Iter(val)' in line and 'mIoU' in line]
    assert lines, log[-3000:]
    return dict(re.findall(r'(aAcc|mIoU|mAcc): (-?[\d.]+)', lines[-1]))


def _assert_same_final_state(reference, resumed):
    """Final checkpoints: weights, optimizer, schedulers and loss history are equal."""
    ref, res = (torch.load(p, map_location='cpu') for p in (reference, resumed))
    assert ref['meta']['iter'] == res['meta']['iter'] == ITERS
    assert ref['state_dict'].keys() == res['state_dict'].keys()
    different = [k for k in ref['state_dict']
                 if not torch.equal(ref['state_dict'][k], res['state_dict'][k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'
    ref_opt, res_opt = ref['optimizer']['state'], res['optimizer']['state']
    assert ref_opt.keys() == res_opt.keys()
    for key in ref_opt:
        for name, value in ref_opt[key].items():
            other = res_opt[key][name]
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(other))
    assert ref['param_schedulers'] == res['param_schedulers']
    ref_loss = ref['message_hub']['log_scalars']['train/loss'].data[0]
    res_loss = res['message_hub']['log_scalars']['train/loss'].data[0]
    assert len(ref_loss) == len(res_loss) == ITERS
    np.testing.assert_array_equal(ref_loss, res_loss)  # every iteration's loss
    for a, b in zip(ref['rng_state']['python'][1], res['rng_state']['python'][1]):
        assert a == b
    assert torch.equal(ref['rng_state']['torch'], res['rng_state']['torch'])
    assert ref['rng_state']['numpy'] == res['rng_state']['numpy']


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The config, and the uninterrupted run: its final checkpoint and log."""
    root = tmp_path_factory.mktemp('resume')
    make_demo_cityscapes(root / 'data', num_train=4, num_val=2, image_size=(64, 128),
                         seed=0)
    convert_cityscapes(root / 'data')
    config = root / 'tiny.py'
    config.write_text(TINY.format(root=ROOT, data=root / 'data', iters=ITERS,
                                  interval=INTERVAL))
    work = root / 'uninterrupted'
    code, log = _train(config, work, cwd=root)
    assert code == 0, log[-3000:]
    return dict(root=root, config=config, final=work / f'iter_{ITERS}.pth', log=log)


def _read_last_checkpoint(work):
    return Path((work / 'last_checkpoint').read_text().strip())


def _train_until_killed(config, work, after_iter, cwd):
    """Start tools/train.py and SIGKILL it as soon as it logs iteration ``after_iter``."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / 'tools/train.py'), str(config), '--work-dir',
         str(work), '--resume'], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    lines = []

    def watch():
        for line in proc.stdout:
            lines.append(line)
            match = re.search(r'Iter\(train\) \[\s*(\d+)/', line)
            if match and int(match.group(1)) >= after_iter and proc.returncode is None:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.stdout.read()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    proc.wait(timeout=300)
    reader.join(timeout=30)
    return proc.returncode, ''.join(lines)


def test_killed_while_saving_and_mid_run_then_resumed_ends_identical(setup, tmp_path):
    """Two interruptions of one run, then a resume to the end.

    1. The process dies halfway through writing the checkpoint of iteration 8: the
       previous checkpoint (iteration 4) is kept although ``max_keep_ckpts=1``, and
       ``last_checkpoint`` still names it; nothing named ``iter_8.pth`` exists.
    2. ``--resume`` continues from iteration 4, saves iteration 8, and is SIGKILLed
       between checkpoints, after iteration 9.
    3. ``--resume`` continues from iteration 8 to the end.
    The final weights, optimizer and scheduler states, the loss of every iteration and
    the final validation metrics equal those of the uninterrupted run.
    """
    config, work = setup['config'], tmp_path / 'work'
    crash_at = 2 * INTERVAL
    script = tmp_path / 'crashing_train.py'
    script.write_text(CRASHING_TRAIN.format(crash_at=crash_at,
                                            train=str(ROOT / 'tools/train.py')))
    code, log = _train(config, work, script=script, cwd=tmp_path)
    assert code == -signal.SIGKILL, log[-3000:]
    assert f'Saving checkpoint at {crash_at} iterations' in log
    assert not (work / f'iter_{crash_at}.pth').exists()  # only a hidden partial file
    assert list(work.glob(f'.iter_{crash_at}.pth*'))
    previous = _read_last_checkpoint(work)
    assert previous == work / f'iter_{INTERVAL}.pth' and previous.is_file()
    checkpoint = torch.load(previous)  # complete, and loads with weights_only=True
    assert checkpoint['meta']['iter'] == INTERVAL and 'rng_state' in checkpoint

    code, log = _train_until_killed(config, work, after_iter=crash_at + 1, cwd=tmp_path)
    assert code == -signal.SIGKILL, log[-3000:]
    assert f'resumed epoch: 0, iter: {INTERVAL}' in log
    assert not list(work.glob('.*.partial'))  # the leftover was cleaned up
    assert _read_last_checkpoint(work) == work / f'iter_{crash_at}.pth'
    assert not (work / f'iter_{INTERVAL}.pth').exists()  # max_keep_ckpts=1
    assert not (work / f'iter_{ITERS}.pth').exists()

    code, log = _train(config, work, '--resume', cwd=tmp_path)
    assert code == 0, log[-3000:]
    assert f'resumed epoch: 0, iter: {crash_at}' in log
    assert 'Restoring the random generator states' in log
    assert sorted(p.name for p in work.glob('*.pth')) == [f'iter_{ITERS}.pth']
    _assert_same_final_state(setup['final'], work / f'iter_{ITERS}.pth')
    assert _last_val_metrics(log) == _last_val_metrics(setup['log'])


def test_resume_refuses_a_truncated_checkpoint_clearly(setup, tmp_path):
    """A checkpoint cut short outside our control (e.g. by a crash of plain mmengine)
    stops --resume at once with a message naming the file (the check tools/train.py
    runs before building the Runner, called here in-process)."""
    spec = importlib.util.spec_from_file_location('train_tool', ROOT / 'tools/train.py')
    train_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_tool)
    work = tmp_path / 'work'
    work.mkdir()
    data = setup['final'].read_bytes()
    broken = work / 'iter_8.pth'
    broken.write_bytes(data[:len(data) // 2])
    (work / 'last_checkpoint').write_text(str(broken))
    cfg = Config(dict(work_dir=str(work), resume=True, load_from=None))
    with pytest.raises(SystemExit, match='not a complete torch checkpoint') as error:
        train_tool.check_resume_checkpoint(cfg)
    assert f'cannot resume: {work / "last_checkpoint"} names {broken}' in str(error.value)
    cfg.load_from = str(broken)
    with pytest.raises(SystemExit, match=f'cannot resume: --resume {broken}'):
        train_tool.check_resume_checkpoint(cfg)
    # complete checkpoints, and a work dir with nothing saved yet, pass
    cfg.load_from = str(setup['final'])
    train_tool.check_resume_checkpoint(cfg)
    (work / 'last_checkpoint').unlink()
    train_tool.check_resume_checkpoint(Config(dict(work_dir=str(work), resume=True)))


def test_checkpoints_load_with_weights_only(setup):
    """Our checkpoints, random states included, load with torch's safe loader
    (other globals stay refused: tests/test_utils/test_checkpoint.py)."""
    checkpoint = torch.load(setup['final'], map_location='cpu', weights_only=True)
    state = checkpoint['rng_state']
    assert set(state) >= {'python', 'numpy', 'torch'}
    assert state['torch'].dtype == torch.uint8
