"""Distributed training and testing on CPUs: tools/dist_train.sh and tools/dist_test.sh
start 2 gloo processes (torchrun) on tiny generated datasets.

* SyncBN (LR-ASPP): 2 processes with batch 2 each train to the same weights and
  running statistics as 1 process with batch 4, the same samples in each step
  (``CPUSyncBatchNorm`` all-reduces the batch statistics; torch's SyncBatchNorm raises
  on CPU tensors).
* BN (SSDLite): the run completes, rank 0 alone writes the checkpoint, and
  validation/testing gather the predictions of both processes: each val image counted
  once, the same metrics as one process.
"""
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
from mobilenet_tasks.datasets.demo_cityscapes import make_demo_cityscapes
from mobilenet_tasks.datasets.demo_coco import make_demo_coco
from mobilenet_tasks.testing import tiny_ssdlite_config

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3

SEGMENTATION = """
_base_ = '{root}/configs/lraspp_v3_large_demo.py'
data_root = '{data}/'
norm_cfg = dict(type='SyncBN', eps=0.001, momentum=0.1)
crop_size = (128, 256)  # the images' size: no resizing, cropping or padding
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg),
    # no dropout (random), and a mean over all pixels: the same on both sides
    decode_head=dict(norm_cfg=norm_cfg, dropout_ratio=0.0,
                     loss_decode=dict(avg_non_ignore=False)))
_pipe = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
         dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size={batch}, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(data_root=data_root, pipeline=_pipe))
val_dataloader = val_cfg = val_evaluator = None
test_dataloader = test_cfg = test_evaluator = None
train_cfg = dict(max_iters={steps}, val_interval=1000)
param_scheduler = []
# SGD: updates proportional to the gradients (Adam's first steps are about +-lr for
# any gradient, however small, which would magnify rounding differences)
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={steps}, max_keep_ckpts=1))
randomness = dict(seed=0)
"""

DETECTION_SCHEDULE = """
train_cfg = dict(max_iters={steps}, val_interval={steps})
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={steps}, max_keep_ckpts=1))
randomness = dict(seed=0)
"""
NUM_VAL = 5  # odd: the distributed sampler pads rank 1 with a repeated image


LAYER_CHECK = """
import importlib.util, sys
import torch, torch.distributed as dist, torch.nn as nn
# the module alone: importing the mobilenet_tasks package (mmdet, mmseg) takes seconds
spec = importlib.util.spec_from_file_location('distributed', sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
CPUSyncBatchNorm, convert_to_cpu_sync_bn = (module.CPUSyncBatchNorm,
                                            module.convert_to_cpu_sync_bn)
dist.init_process_group('gloo')
rank, world = dist.get_rank(), dist.get_world_size()
g = torch.Generator().manual_seed(0)
x = torch.randn(8, 5, 6, 7, generator=g) * 3 + 1
target = torch.randn(8, 5, 6, 7, generator=g)
bn = nn.BatchNorm2d(5)
with torch.no_grad():
    bn.weight.uniform_(0.5, 1.5, generator=g)
    bn.bias.normal_(generator=g)
sync = nn.Sequential(nn.SyncBatchNorm(5))
sync.load_state_dict({'0.' + k: v for k, v in bn.state_dict().items()})
assert convert_to_cpu_sync_bn(sync) == 1 and type(sync[0]) is CPUSyncBatchNorm
x1 = x.clone().requires_grad_()
y1 = bn(x1)
((y1 - target) ** 2).mean().backward()  # one process, the whole batch
x2 = x[rank::world].clone().requires_grad_()
y2 = sync(x2)
((y2 - target[rank::world]) ** 2).mean().backward()
for p in sync.parameters():  # what DDP does
    dist.all_reduce(p.grad)
    p.grad /= world
m = sync[0]
diffs = dict(
    output=(y2 - y1[rank::world]).abs().max(),
    input_grad=(x2.grad / world - x1.grad[rank::world]).abs().max() / x1.grad.abs().max(),
    weight_grad=(m.weight.grad - bn.weight.grad).abs().max(),
    bias_grad=(m.bias.grad - bn.bias.grad).abs().max(),
    running_mean=(m.running_mean - bn.running_mean).abs().max(),
    running_var=(m.running_var - bn.running_var).abs().max())
bad = {k: v.item() for k, v in diffs.items() if v > 1e-5}
assert not bad, bad
m.eval()  # evaluation: the running statistics, no communication
assert torch.allclose(m(x), bn.eval()(x), atol=1e-6)
print('layer ok', rank)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
               PORT=str(_free_port()))
    proc = subprocess.run([*map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _state(checkpoint):
    return torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']


def test_cpu_sync_bn_layer_is_batchnorm_over_the_union_of_batches(tmp_path):
    """2 gloo processes with 4 samples each: the outputs, the gradients (input,
    weight, bias; DDP-averaged) and the running statistics of BatchNorm over the 8."""
    script = tmp_path / 'layer_check.py'
    script.write_text(LAYER_CHECK)
    code, log = _run(sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
                     2, '--master_port', _free_port(), script,
                     ROOT / 'mobilenet_tasks/engine/distributed.py', cwd=ROOT)
    assert code == 0, log[-3000:]
    assert log.count('layer ok') == 2


def test_rank_r_trains_on_samples_r_r_plus_2():
    """The 2-process run's step t sees samples 4t..4t+3 (rank r: 4t+r, 4t+r+2), those
    of the 1-process run's step t with batch 4."""
    from mmengine.dataset import InfiniteSampler
    firsts = []
    for rank in (0, 1):
        sampler = InfiniteSampler(list(range(8)), shuffle=False, seed=0)
        sampler.rank, sampler.world_size = rank, 2  # as get_dist_info() gives them
        it = sampler._indices_of_rank()
        firsts.append([next(it) for _ in range(4)])
    assert firsts == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_syncbn_two_gloo_processes_match_one_process(tmp_path):
    data = tmp_path / 'cityscapes'
    make_demo_cityscapes(data, num_train=2 * STEPS * 2, num_val=1, image_size=(128, 256),
                         seed=0)
    convert_cityscapes(data)
    runs = {}
    for procs, batch in ((1, 4), (2, 2)):
        config = tmp_path / f'seg_{procs}.py'
        config.write_text(SEGMENTATION.format(root=ROOT, data=data, batch=batch,
                                              steps=STEPS))
        work = tmp_path / f'work_{procs}'
        if procs == 1:  # in this process, to save a start-up (what tools/train.py does)
            cfg = Config.fromfile(config)
            cfg.work_dir = str(work)
            Runner.from_cfg(cfg).train()
        else:
            code, log = _run('bash', ROOT / 'tools/dist_train.sh', config, procs,
                             '--work-dir', work, cwd=tmp_path)
            assert code == 0, log[-3000:]
            assert 'compute their batch statistics over all 2 CPU processes' in log
        runs[procs] = _state(work / f'iter_{STEPS}.pth')
    one, two = runs[1], runs[2]
    assert one.keys() == two.keys()
    params = [k for k in one if one[k].is_floating_point() and 'running_' not in k]
    stats = [k for k in one if 'running_' in k]
    assert len(stats) == 2 * 47  # every BN layer is a SyncBN layer

    def max_diff(keys):
        return max((one[k] - two[k]).abs().max().item() for k in keys)

    # Measured after 3 steps (weights move by up to 1.4e-2): 2 processes vs 1, 2.0e-4
    # (parameters) and 6.7e-4 (running statistics); 1 process vs itself with 2
    # threads instead of 1 (rounding alone), 3.0e-4 and 6.0e-4; 2 processes with
    # per-process BN instead of SyncBN, 6.7e-3 and 0.92.
    print(f'max |2 processes - 1 process|: parameters {max_diff(params):.2e}, '
          f'running statistics {max_diff(stats):.2e}')
    assert max_diff(params) < 1.5e-3
    assert max_diff(stats) < 1e-2
    for k in one:  # num_batches_tracked
        if not one[k].is_floating_point():
            assert torch.equal(one[k], two[k]), k


def test_bn_detection_train_and_test_on_two_gloo_processes(tmp_path):
    data = tmp_path / 'coco'
    make_demo_coco(data, num_train=8, num_val=NUM_VAL, image_size=128, seed=3)
    config = tmp_path / 'det.py'
    config.write_text(tiny_ssdlite_config(data)
                      + DETECTION_SCHEDULE.format(steps=STEPS))
    work = tmp_path / 'work'
    code, log = _run('bash', ROOT / 'tools/dist_train.sh', config, 2, '--work-dir', work,
                     cwd=tmp_path)
    assert code == 0, log[-3000:]
    assert 'normalise with the statistics of their own process' in log
    assert sorted(p.name for p in work.glob('*.pth')) == [f'iter_{STEPS}.pth']
    assert log.count('coco/bbox_mAP:') == 1  # rank 0 evaluates, once
    checkpoint = work / f'iter_{STEPS}.pth'

    out = tmp_path / 'preds.pkl'
    code, log = _run('bash', ROOT / 'tools/dist_test.sh', config, checkpoint, 2,
                     '--work-dir', tmp_path / 'test2', '--out', out, cwd=tmp_path)
    assert code == 0, log[-3000:]
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    # gathered from both processes, the padding (a repeated image) dropped
    assert len(predictions) == NUM_VAL
    assert len({p['img_id'] for p in predictions}) == NUM_VAL

    # one process (in this one, to save a start-up): the same metrics
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.load_from = str(tmp_path / 'test1'), str(checkpoint)
    one = Runner.from_cfg(cfg).test()
    two = json.loads((tmp_path / 'test2/test_metrics.json').read_text())['metrics']
    assert 'coco/bbox_mAP' in two
    assert two == pytest.approx({k: float(v) for k, v in one.items()}, abs=1e-6)
