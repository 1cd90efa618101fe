"""Distributed training and testing on CPUs: tools/dist_train.sh and tools/dist_test.sh
start 2 gloo processes (torchrun) on tiny generated datasets.

* SyncBN (LR-ASPP): 2 processes with batch 2 each train to the same weights and
  running statistics as 1 process with batch 4, the same samples in each step
  (``CPUSyncBatchNorm`` all-reduces the batch statistics; torch's SyncBatchNorm raises
  on CPU tensors). In float64, so that the comparison does not depend on the CPU's
  float32 rounding (mobilenet_tasks/testing.py).
* BN (SSDLite): the run completes, rank 0 alone writes the checkpoint, and
  validation/testing gather the predictions of both processes: each val image counted
  once, the same metrics as one process, on a ground truth the tested model scores
  1.0 on (its own confident detections), so that a prediction lost or wrong on one
  process shows in the metrics.
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
from mobilenet_tasks.testing import (FLOAT64_RTOL, max_abs, max_abs_diff,
                                     tiny_ssdlite_config)

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
# float64: the model's parameters and buffers (the default dtype when it is built),
# and so the data preprocessor's output (its mean and std are float64 buffers)
custom_imports = dict(imports=['float64_default'], allow_failed_imports=False)
"""
FLOAT64_DEFAULT = 'import torch\ntorch.set_default_dtype(torch.float64)\n'

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
rtol = float(sys.argv[2])  # FLOAT64_RTOL: float64 on both sides
torch.set_default_dtype(torch.float64)
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
assert m.weight.dtype == y2.dtype == torch.float64
pairs = dict(  # (ours, BatchNorm's): rounding apart, ~1e-16 of their scale
    output=(y2, y1[rank::world]), input_grad=(x2.grad / world, x1.grad[rank::world]),
    weight_grad=(m.weight.grad, bn.weight.grad), bias_grad=(m.bias.grad, bn.bias.grad),
    running_mean=(m.running_mean, bn.running_mean),
    running_var=(m.running_var, bn.running_var))
m.eval()  # evaluation: the running statistics, no communication
pairs['eval_output'] = (m(x), bn.eval()(x))
diffs = {k: ((a - b).abs().max() / b.abs().max()).item() for k, (a, b) in pairs.items()}
bad = {k: v for k, v in diffs.items() if not v <= rtol}
assert not bad, bad  # relative differences
print('layer ok', rank)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _run(*args, cwd, pythonpath=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable,
               PORT=str(_free_port()))
    if pythonpath:
        env['PYTHONPATH'] = os.pathsep.join(
            [str(pythonpath)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    proc = subprocess.run([*map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _state(checkpoint):
    return torch.load(checkpoint, map_location='cpu', weights_only=False)['state_dict']


def test_cpu_sync_bn_layer_is_batchnorm_over_the_union_of_batches(tmp_path):
    """2 gloo processes with 4 samples each: the outputs, the gradients (input,
    weight, bias; DDP-averaged) and the running statistics of BatchNorm over the 8,
    and in evaluation BatchNorm's output. In float64, to FLOAT64_RTOL of each value's
    scale (the float32 check allowed 1e-5, tuned to one CPU's rounding)."""
    script = tmp_path / 'layer_check.py'
    script.write_text(LAYER_CHECK)
    code, log = _run(sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
                     2, '--master_port', _free_port(), script,
                     ROOT / 'mobilenet_tasks/engine/distributed.py', FLOAT64_RTOL,
                     cwd=ROOT)
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
    """In float64, where the two differ by rounding alone (~1e-13 of the weights after
    3 steps) and a real difference stands out (with per-process BN instead of SyncBN
    the parameters differ by ~1e-2 of their scale)."""
    data = tmp_path / 'cityscapes'
    make_demo_cityscapes(data, num_train=2 * STEPS * 2, num_val=1, image_size=(128, 256),
                         seed=0)
    convert_cityscapes(data)
    (tmp_path / 'float64_default.py').write_text(FLOAT64_DEFAULT)
    runs = {}
    for procs, batch in ((1, 4), (2, 2)):
        config = tmp_path / f'seg_{procs}.py'
        config.write_text(SEGMENTATION.format(root=ROOT, data=data, batch=batch,
                                              steps=STEPS))
        work = tmp_path / f'work_{procs}'
        if procs == 1:  # in this process, to save a start-up (what tools/train.py does)
            sys.path.insert(0, str(tmp_path))
            try:
                cfg = Config.fromfile(config)
                torch.set_default_dtype(torch.float64)  # if imported before
                cfg.work_dir = str(work)
                Runner.from_cfg(cfg).train()
            finally:
                torch.set_default_dtype(torch.float32)
                sys.path.remove(str(tmp_path))
        else:
            code, log = _run('bash', ROOT / 'tools/dist_train.sh', config, procs,
                             '--work-dir', work, cwd=tmp_path, pythonpath=tmp_path)
            assert code == 0, log[-3000:]
            assert 'compute their batch statistics over all 2 CPU processes' in log
        runs[procs] = _state(work / f'iter_{STEPS}.pth')
    one, two = runs[1], runs[2]
    assert one.keys() == two.keys()
    floats = [k for k in one if one[k].is_floating_point()]
    assert all(one[k].dtype == two[k].dtype == torch.float64 for k in floats)
    stats = [k for k in one if 'running_' in k]
    assert len(stats) == 2 * 47  # every BN layer is a SyncBN layer
    # each kind of tensor to FLOAT64_RTOL of its largest value: rounding scales with
    # the values computed, not with each tensor (a BN bias whose gradient is 0 in
    # exact arithmetic holds rounding, ~1e-18)
    kinds = dict(parameters=[k for k in floats if 'running_' not in k],
                 running_mean=[k for k in stats if k.endswith('running_mean')],
                 running_var=[k for k in stats if k.endswith('running_var')])
    for kind, keys in kinds.items():
        scale = max(max_abs(one[k]) for k in keys)
        diff, worst = max((max_abs_diff(two[k], one[k]), k) for k in keys)
        print(f'max |2 processes - 1 process| of the {kind}: {diff:.2e} ({worst}; '
              f'scale {scale:.3g})')
        assert diff <= FLOAT64_RTOL * scale, (kind, worst, diff, scale)
    for k in one:  # num_batches_tracked
        if not one[k].is_floating_point():
            assert torch.equal(one[k], two[k]), k


def _test_in_this_process(config, checkpoint, work_dir, out=None):
    """tools/test.py in this process (saves a start-up): the metrics, and with ``out``
    the predictions dumped there."""
    from mmengine.evaluator import DumpResults
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.load_from = str(work_dir), str(checkpoint)
    runner = Runner.from_cfg(cfg)
    if out:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=str(out)))
    return {k: float(v) for k, v in runner.test().items()}


def _confident_checkpoint(config, checkpoint, out):
    """``checkpoint`` with every layer randomized (``randomize_``, seeded): a 3-step
    model scores its boxes alike (consecutive scores of its best 40 differ by under
    1e-5), so that float32 rounding could reorder them; random weights spread the
    scores over (0, 1)."""
    from mobilenet_tasks.testing import randomize_
    from mobilenet_tasks.utils.config import build_model
    model = build_model(str(config), init_weights=False)
    model.load_state_dict(_state(checkpoint))
    assert randomize_(model, torch.Generator().manual_seed(0)) > 0
    torch.save(dict(state_dict=model.state_dict()), out)
    return out


# The scores of a detection move between runs by float32 rounding (batch composition,
# kernels, CPU): the logits by ~1e-4 of their scale each (mobilenet_tasks/testing.py),
# 6e-4 for the randomized model's (up to ~6), so by 1.2e-3 between two runs; a softmax
# score by at most twice its logits' change, 2.4e-3. A threshold in the middle of a
# gap of 1e-2 between a class's scores keeps 2.6e-3 to spare on either side: the same
# detections rank above it in every run. (This model's widest gaps among each class's
# 15 best: 0.013 to 0.040.)
MIN_SCORE_GAP = 1e-2


def _detections_as_ground_truth(predictions, ann_file, max_boxes=15):
    """Make the model's own confident detections the ground truth of ``ann_file``.

    Per class, the detections above the middle of the widest gap between consecutive
    scores among its ``max_boxes`` best (if at least ``MIN_SCORE_GAP`` wide, else the
    class gets none) become its boxes. Each is then a true positive at every IoU
    threshold (IoU 1 with its own box, at most NMS's 0.55 with any other of its
    class) and ranks above every other detection of its class, false positives all:
    COCO's AP is 1 for each class with boxes, bbox mAP 1.0 exactly, and a detection
    lost, duplicated or computed differently on one process lowers it.

    Returns:
        tuple: ``{label: (threshold, gap)}`` of the classes given boxes, and the number
        of boxes per image id.
    """
    data = json.loads(Path(ann_file).read_text())
    cat_ids = [c['id'] for c in data['categories']]  # label i: the i-th category
    dets = [(float(score), p['img_id'], [float(v) for v in box], int(label))
            for p in predictions
            for box, score, label in zip(p['pred_instances']['bboxes'],
                                         p['pred_instances']['scores'],
                                         p['pred_instances']['labels'])]
    thresholds = {}
    for label in range(len(cat_ids)):
        scores = sorted((d[0] for d in dets if d[3] == label), reverse=True)
        if len(scores) < 2:
            continue
        gap, k = max((scores[k - 1] - scores[k], k)
                     for k in range(1, min(max_boxes, len(scores) - 1) + 1))
        if gap >= MIN_SCORE_GAP:
            thresholds[label] = ((scores[k - 1] + scores[k]) / 2, gap)
    data['annotations'], per_image = [], {img['id']: 0 for img in data['images']}
    for score, img_id, (x1, y1, x2, y2), label in dets:
        if label in thresholds and score > thresholds[label][0]:
            data['annotations'].append(dict(
                id=len(data['annotations']) + 1, image_id=img_id,
                category_id=cat_ids[label], bbox=[x1, y1, x2 - x1, y2 - y1],
                area=(x2 - x1) * (y2 - y1), iscrowd=0))
            per_image[img_id] += 1
    Path(ann_file).write_text(json.dumps(data))
    return thresholds, per_image


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

    # A model of 3 steps scores ~0 mAP on the real boxes, where equal metrics say
    # little. Its weights randomized, its own confident detections as the ground
    # truth, it scores 1.0.
    checkpoint = _confident_checkpoint(config, checkpoint, tmp_path / 'random.pth')
    first = tmp_path / 'first.pkl'
    _test_in_this_process(config, checkpoint, tmp_path / 'test0', out=first)
    with open(first, 'rb') as f:
        thresholds, per_image = _detections_as_ground_truth(
            pickle.load(f), data / 'annotations/instances_val.json')
    print(f'ground truth: per class (threshold, gap) {thresholds}, boxes per image '
          f'{per_image}')
    assert len(thresholds) >= 2, thresholds
    assert all(per_image.values()), per_image  # both processes' images have boxes

    out = tmp_path / 'preds.pkl'
    code, log = _run('bash', ROOT / 'tools/dist_test.sh', config, checkpoint, 2,
                     '--work-dir', tmp_path / 'test2', '--out', out, cwd=tmp_path)
    assert code == 0, log[-3000:]
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    # gathered from both processes, the padding (a repeated image) dropped
    assert len(predictions) == NUM_VAL
    assert len({p['img_id'] for p in predictions}) == NUM_VAL

    # one process: the same metrics (COCO's, which mmdet rounds to 3 decimals; 1e-6
    # only absorbs the JSON round trip)
    one = _test_in_this_process(config, checkpoint, tmp_path / 'test1')
    two = json.loads((tmp_path / 'test2/test_metrics.json').read_text())['metrics']
    assert one['coco/bbox_mAP'] == 1.0, one
    assert two == pytest.approx(one, abs=1e-6)
