"""Measure the README's fine-tuning guidance: the templates of ``configs/finetune/`` on
datasets of their own (:mod:`mobilenet_tasks.datasets.custom_demo`), from random weights
and from a pretrained start, over learning rate, frozen stages and BN momentum.

    python tools/misc/finetune_guidance.py --task detection [--start CKPT]
    python tools/misc/finetune_guidance.py --task segmentation [--start CKPT]

The pretrained start is a detector / segmenter trained by ``make demo`` (default
``work_dirs/demo/<task>/iter_N.pth``, the latest there): trained on other classes and
another image size (the demo's 4 shape classes at 160x160; its 19-class street
scenes), so its class layers start anew, as with a COCO checkpoint. No ImageNet or COCO
weights can be downloaded on the machines this was measured on; the README says which
findings carry over.

Every run is ``tools/train.py`` on the template (one thread, loaders in the process),
validated on the held-out split every ``--val-interval`` steps; each setting runs with
every ``--seeds``. Writes ``<work-dir>/<task>.json`` and prints a markdown table: the
metric at each validation (mean over the seeds, and each seed's).
"""
import argparse
import glob
import json
import os
import os.path as osp
import shutil
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: (name, template values, uses the pretrained start) per task; the first is the
#: template as shipped, from random weights.
GRID = {
    'detection': [
        ('random init, lr 4e-3 (template)', dict(), False),
        ('random init, lr 1e-2', dict(lr=1e-2), False),
        ('pretrained, lr 4e-3', dict(), True),
        ('pretrained, lr 1e-3', dict(lr=1e-3), True),
        ('pretrained, lr 1e-3, frozen_stages 6', dict(lr=1e-3, frozen_stages=6), True),
    ],
    'segmentation': [
        ('random init, lr 4e-3, BN momentum 0.1 (template)', dict(), False),
        ('random init, lr 4e-3, BN momentum 0.01', dict(
            norm_cfg=dict(type='BN', eps=0.001, momentum=0.01)), False),
        ('random init, lr 4e-3, BN momentum 0.003 (the Cityscapes recipe)', dict(
            norm_cfg=dict(type='BN', eps=0.001, momentum=0.003)), False),
        ('random init, lr 1e-2', dict(lr=1e-2), False),
        ('pretrained, lr 4e-3', dict(), True),
        ('pretrained, lr 1e-3', dict(lr=1e-3), True),
        ('pretrained, lr 1e-3, frozen_stages 6', dict(lr=1e-3, frozen_stages=6), True),
    ],
}
TEMPLATES = {'detection': 'ssdlite_v3_large_custom.py',
             'segmentation': 'lraspp_v3_large_custom.py'}
METRICS = {'detection': 'coco/bbox_mAP', 'segmentation': 'mIoU'}


def _data_values(task: str, data_root: str) -> dict:
    from mobilenet_tasks.datasets.custom_demo import (THREE_CLASSES, TWO_CLASSES,
                                                      make_three_class_masks,
                                                      make_two_class_coco)
    if task == 'detection':
        root = make_two_class_coco(osp.join(data_root, 'two_class_coco'))
        return dict(data_root=f'{root}/', classes=TWO_CLASSES, input_size=96,
                    batch_size=8)
    root = make_three_class_masks(osp.join(data_root, 'three_class_masks'))
    return dict(data_root=f'{root}/', classes=THREE_CLASSES, crop_size=(96, 128),
                test_scale=(128, 96), batch_size=4)


def _latest_checkpoint(task: str) -> str:
    found = sorted(glob.glob(osp.join(ROOT, 'work_dirs/demo', task, 'iter_*.pth')),
                   key=lambda p: int(p.rsplit('_', 1)[1].split('.')[0]))
    if not found:
        raise SystemExit(f'error: no demo {task} checkpoint in work_dirs/demo/{task}/: '
                         'run `make demo` first, or pass --start CKPT')
    return found[-1]


def _val_curve(work_dir: str, metric: str) -> dict:
    """step -> metric, from the run's scalars.json (mmengine's LocalVisBackend)."""
    curve = {}
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if metric in record:
                    curve[int(record['step'])] = float(record[metric])
    return dict(sorted(curve.items()))


def run_one(task: str, config: str, work_dir: str, seed: int, iters: int,
            val_interval: int, load_from) -> dict:
    options = [f'randomness.seed={seed}', f'train_cfg.max_iters={iters}',
               f'train_cfg.val_interval={val_interval}',
               f'default_hooks.checkpoint.interval={iters}']
    for loader in ('train', 'val', 'test'):
        options += [f'{loader}_dataloader.num_workers=0',
                    f'{loader}_dataloader.persistent_workers=False']
    if load_from:
        options.append(f'load_from={load_from}')
    start = time.time()
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools/train.py'), config, '--work-dir',
         work_dir, '--threads', '1', '--cfg-options', *options],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    if proc.returncode != 0:
        raise SystemExit(f'error: {config} seed {seed} failed:\n'
                         f'{(proc.stdout + proc.stderr)[-3000:]}')
    return dict(curve=_val_curve(work_dir, METRICS[task]),
                seconds=round(time.time() - start, 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', choices=sorted(GRID), required=True)
    parser.add_argument('--start', help='the pretrained start (default: the latest '
                        'make-demo checkpoint of the task)')
    parser.add_argument('--iters', type=int, help='steps a run (default: detection '
                        '300, segmentation 120, the fine-tuning test\'s)')
    parser.add_argument('--val-interval', type=int,
                        help='validate every N steps (default: iters / 3)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--only', type=int, nargs='+',
                        help='run only these rows of the grid (0-based)')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs',
                                                       'finetune_guidance'))
    args = parser.parse_args(argv)

    from mobilenet_tasks.testing import config_from_template
    task = args.task
    iters = args.iters or (300 if task == 'detection' else 120)
    val_interval = args.val_interval or max(1, iters // 3)
    rows = [(i, row) for i, row in enumerate(GRID[task])
            if args.only is None or i in args.only]
    start = None
    if any(pretrained for _, (_, _, pretrained) in rows):
        start = args.start or _latest_checkpoint(task)
    os.makedirs(args.work_dir, exist_ok=True)
    data = _data_values(task, osp.join(args.work_dir, 'data'))
    out = osp.join(args.work_dir, f'{task}.json')
    results = {}
    if osp.isfile(out):
        with open(out) as f:
            results = json.load(f)['runs']
    for index, (name, values, pretrained) in rows:
        config = config_from_template(
            TEMPLATES[task], osp.join(args.work_dir, f'{task}_{index}.py'),
            dict(data, **values))
        for seed in args.seeds:
            key = f'{name} | seed {seed}'
            work = osp.join(args.work_dir, f'{task}_{index}_seed{seed}')
            shutil.rmtree(work, ignore_errors=True)  # a curve of this run only
            results[key] = run_one(task, str(config), work, seed, iters, val_interval,
                                   start if pretrained else None)
            print(f'{key}: {results[key]}', flush=True)
            with open(out, 'w') as f:
                json.dump(dict(task=task, start=start, iters=iters, runs=results), f,
                          indent=1)
    print(markdown(task, results))


def markdown(task: str, results: dict) -> str:
    """The metric at each validation: mean over the seeds (each seed's)."""
    by_name = {}
    for key, run in results.items():
        by_name.setdefault(key.split(' | ')[0], []).append(run['curve'])
    steps = sorted({s for curves in by_name.values() for c in curves for s in c})
    scale = 100 if task == 'detection' else 1  # mAP x 100, mIoU in %
    lines = ['| setting | ' + ' | '.join(f'step {s}' for s in steps) + ' |',
             '|---|' + '---|' * len(steps)]
    for name, curves in by_name.items():
        cells = []
        for s in steps:
            values = [c[str(s)] if str(s) in c else c.get(s) for c in curves]
            values = [v * scale for v in values if v is not None]
            cells.append(f'{statistics.mean(values):.1f} (' + ', '.join(
                f'{v:.1f}' for v in values) + ')' if values else '-')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
