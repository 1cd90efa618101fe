"""The tools refuse what would be ignored or fail, in one line, before anything runs:
``--cfg-options`` keys the config and the Runner do not know, arguments a class does not
take, ``dict(...)`` values, a missing config, weights that do not fit ``tools/test.py``
or ``--resume``; and they choose their threads (issue 14)."""
import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mobilenet_tasks.datasets.demo_coco import make_demo_coco
from mobilenet_tasks.engine.cfg_options import CfgOptionsError, check_cfg_options
from mobilenet_tasks.utils.arguments import DictAction, parse_value
from mobilenet_tasks.testing import tiny_ssdlite_config
from mobilenet_tasks.utils.config import build_model
from mobilenet_tasks.utils.threads import busy_warning, choose_threads

ROOT = Path(__file__).resolve().parents[2]
DET = ROOT / 'configs/ssdlite_v3_large_demo.py'
SEG = ROOT / 'configs/lraspp_v3_large_demo.py'


def _run(*args, cwd, env=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


# -- values ------------------------------------------------------------------------------
def test_dict_values_are_read():
    text = "dict(type='Pretrained', checkpoint='x.pth', prefix='backbone.')"
    assert parse_value(text) == dict(type='Pretrained', checkpoint='x.pth',
                                     prefix='backbone.')
    assert parse_value('[dict(a=1, b=-2.5), dict(c=(1, 2), d=None, e=True)]') == [
        dict(a=1, b=-2.5), dict(c=(1, 2), d=None, e=True)]
    assert parse_value('dict(type=Pretrained)') == dict(type='Pretrained')  # bare word
    # everything else as mmengine's DictAction reads it
    assert parse_value('2') == 2 and parse_value('0.5') == 0.5
    assert parse_value('[1,2]') == [1, 2] and parse_value('a,b') == ['a', 'b']
    assert parse_value('True') is True and parse_value('None') is None
    with pytest.raises(ValueError, match=r"cannot read 'f\(\)'.*quote strings"):
        parse_value('dict(a=f())')
    with pytest.raises(ValueError, match='not valid python'):
        parse_value('dict(a=')


def test_the_argument_parser_reads_them_and_says_which_is_bad(capsys):
    parser = argparse.ArgumentParser(prog='train.py')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    # mmengine's DictAction: RecursionError on this README example
    args = parser.parse_args(['--cfg-options', 'train_cfg.max_iters=2',
                              "model.backbone.init_cfg=dict(type='Pretrained', "
                              "checkpoint='x.pth', prefix='backbone.')"])
    assert args.cfg_options == {
        'train_cfg.max_iters': 2,
        'model.backbone.init_cfg': dict(type='Pretrained', checkpoint='x.pth',
                                        prefix='backbone.')}
    with pytest.raises(SystemExit) as info:
        parser.parse_args(['--cfg-options', 'model.backbone.init_cfg=dict(x=open(1))'])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert 'argument --cfg-options: model.backbone.init_cfg: cannot read' in err
    with pytest.raises(SystemExit):
        parser.parse_args(['--cfg-options', 'train_cfg'])
    assert "'train_cfg' is not key=value" in capsys.readouterr().err


# -- keys --------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def det_cfg():
    return Config.fromfile(str(DET))


@pytest.mark.parametrize('key', [
    'train_cfg.max_iters',  # a loop argument
    'model.backbone.widen_factor',  # MobileNetV3's
    'model.backbone.init_cfg',  # BaseModule's, through MobileNetV3's signature
    'model.bbox_head.test_cfg.score_thr',  # a free dict
    'randomness.seed',  # a Runner argument the config leaves out
    'data_check.policy',  # ours
    'train_dataloader.dataset.pipeline.2.scale',  # a list index
    'optim_wrapper.optimizer.lr',
])
def test_keys_that_take_effect_pass(det_cfg, key):
    check_cfg_options(det_cfg, {key: 1})


@pytest.mark.parametrize('key, message', [
    ('trian_cfg.max_iters', "the config has no 'trian_cfg' and the Runner takes no such "
                            'argument, so it would be ignored; did you mean train_cfg?'),
    ('model.backbone.widen_factr', "model.backbone is a MobileNetV3, which takes no "
                                   "argument 'widen_factr'; did you mean widen_factor?"),
    ('train_cfg.max_iter', "train_cfg is a IterBasedTrainLoop, which takes no argument "
                           "'max_iter'; did you mean max_iters?"),
    ('train_dataloader.dataset.pipeline.9.scale', 'train_dataloader.dataset.pipeline is '
                                                  'a list of 5; index it with 0 to 4'),
    ('model.backbone.arch.x', "model.backbone.arch is 'large', not a dict"),
])
def test_keys_that_would_be_ignored_or_fail_are_refused(det_cfg, key, message):
    with pytest.raises(CfgOptionsError) as info:
        check_cfg_options(det_cfg, {key: 1})
    assert message in str(info.value)
    assert str(info.value).startswith(f'--cfg-options {key}: ')


# -- threads -----------------------------------------------------------------------------
def test_threads(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    monkeypatch.delenv('SLURM_NTASKS_PER_NODE', raising=False)
    assert choose_threads(3) == 3
    cores = len(os.sched_getaffinity(0))
    assert choose_threads() == cores
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')  # two processes on this machine
    assert choose_threads() == max(1, cores // 2)
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    assert choose_threads() == 1
    monkeypatch.setenv('OMP_NUM_THREADS', 'all')
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='all' is not a positive"):
        choose_threads()
    with pytest.raises(ValueError, match='--threads must be a positive integer'):
        choose_threads(0)
    assert busy_warning(1, processes=1, cores=2, load=0.2) is None
    assert busy_warning(1, processes=2, cores=2, load=3.0) is None  # nothing fewer
    assert busy_warning(2, processes=1, cores=2, load=0.4) is None
    message = busy_warning(2, processes=1, cores=2, load=1.6)
    assert message.startswith('the machine is busy: load average 1.6 on 2 cores, and '
                              'this run adds 2 threads')
    assert 'Pass --threads 1 (or set OMP_NUM_THREADS)' in message


# -- the tools ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    make_demo_coco(root / 'coco', num_train=2, num_val=2, image_size=128, seed=3)
    config = root / 'tiny.py'
    config.write_text(tiny_ssdlite_config(root / 'coco', input_size=128)
                      + 'train_cfg = dict(max_iters=1, val_interval=1)\n')
    seg = root / 'seg.pth'  # weights of another task
    torch.save({'state_dict': build_model(str(SEG)).state_dict(), 'meta': {}}, seg)
    return root, config, seg


def test_tools_stop_in_one_line(tiny):
    root, config, seg = tiny
    code, log = _run(ROOT / 'tools/train.py', config, '--cfg-options',
                     'trian_cfg.max_iters=2', cwd=root)
    assert code == 1 and log.strip().splitlines()[-1] == (
        "error: --cfg-options trian_cfg.max_iters: the config has no 'trian_cfg' and "
        'the Runner takes no such argument, so it would be ignored; did you mean '
        'train_cfg?')
    code, log = _run(ROOT / 'tools/train.py', root / 'nothere.py', cwd=root)
    assert code == 1 and log.strip().splitlines()[-1].startswith(
        f'error: no config file {root / "nothere.py"}; ')
    assert 'Traceback' not in log
    # a segmentation checkpoint given to a detection config: refused, not mAP 0.0
    code, log = _run(ROOT / 'tools/test.py', config, seg, '--work-dir', root / 'w',
                     cwd=root)
    last = log.strip().splitlines()[-1]
    assert code == 1, log[-2000:]
    assert last.startswith(f'error: weights {seg} do not match {config}: ')
    assert 'It holds a segmentation model (decode_head.*): pass a segmentation ' \
        'config.' in last
    assert 'Traceback' not in log and 'coco/bbox_mAP' not in log


def test_training_does_not_need_the_test_set(tiny):
    """tools/train.py used to refuse to start until test_dataloader's paths existed;
    now it trains and says what tools/test.py will need."""
    root, config, _ = tiny
    code, log = _run(ROOT / 'tools/train.py', config, '--work-dir', root / 'w2',
                     '--cfg-options', f'test_dataloader.dataset.data_root={root}/none/',
                     cwd=root)
    assert code == 0, log[-3000:]
    assert (f'test_dataloader: {root}/none/annotations/instances_val.json does not '
            'exist. Training does not read it; tools/test.py will') in log
    assert (root / 'w2' / 'iter_1.pth').is_file()

