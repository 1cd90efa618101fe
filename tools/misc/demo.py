"""`make demo`: train the paper's detector and segmenter on the built-in demo datasets
and report what they reach on the demo val splits, before and after training.

    python tools/misc/demo.py [--task all|detection|segmentation] [--iters N]
                              [--work-dir work_dirs/demo]

- detection: SSDLite + MobileNetV3-Large (``configs/ssdlite_v3_large_demo.py``) on 4
  classes of shapes (400 train / 100 val images, 160x160, COCO format, generated into
  data/demo_coco); COCO bbox mAP with pycocotools.
- segmentation: LR-ASPP + MobileNetV3-Large, the paper's Table 7 row 8 architecture
  (``configs/lraspp_v3_large_demo.py``) on synthetic street scenes in the Cityscapes
  layout (60 train / 20 val, 256x512, generated into data/demo_cityscapes and labelled
  by the Cityscapes converter); mIoU with mmseg's IoUMetric.

The datasets are generated deterministically on first use and reused after. The figures
go to ``<work-dir>/demo_result.json``; checkpoints and logs to ``<work-dir>/<task>/``.

``--int8`` then deploys each trained model in int8 on ExecuTorch (XNNPACK) two ways and
puts them beside the float32 program: post-training quantization (calibrated on 32
train images) and quantization-aware training (``tools/train.py CONFIG --qat``: 10% of
the float schedule's iterations from the trained checkpoint, into
``<work-dir>/<task>_qat/``). Accuracy is ``tools/test.py`` on each program, latency the
interleaved median on 1 thread (``tools/analysis_tools/int8_recipes.py --qat``, files
in ``<work-dir>/<task>_int8/``). About 10 more minutes a task on 2 cores; with
``--reuse`` the float checkpoints a previous run left are used instead of training.
"""
import argparse
import json
import os
import os.path as osp
import time

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

TASKS = {
    'detection': dict(
        model='SSDLite-MobileNetV3-Large',
        config='configs/ssdlite_v3_large_demo.py',
        data_root='data/demo_coco',
        metric='coco/bbox_mAP',
        metric_name='bbox mAP',
        fmt='{:.3f}'),
    'segmentation': dict(
        model='LR-ASPP-MobileNetV3-Large (Table 7 row 8)',
        config='configs/lraspp_v3_large_demo.py',
        data_root='data/demo_cityscapes',
        metric='mIoU',
        metric_name='mIoU',
        fmt='{:.1f}%'),  # mmseg reports percentages
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--task', choices=('all', *TASKS), default='all',
                        help='which demo to run (default: both)')
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s)')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='torch threads (default: all cores)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the demo config(s), key=value')
    parser.add_argument('--int8', action='store_true',
                        help='then float32, post-training int8 and QAT int8 '
                        'ExecuTorch programs side by side: accuracy and latency')
    parser.add_argument('--reuse', action='store_true',
                        help='use the float checkpoint a previous run left in the work '
                        'dir instead of training (with --int8)')
    args = parser.parse_args()
    if args.reuse and not args.int8:
        parser.error('--reuse skips the float training for --int8: add --int8')
    if args.iters is not None and args.iters < 1:
        parser.error(f'--iters must be a positive number, got {args.iters}')
    return args


def make_dataset(task: str, data_root: str) -> dict:
    """Generate (or reuse) the task's demo dataset; return its summary."""
    if task == 'detection':
        from mobilenet_tasks.datasets.demo_coco import make_demo_coco
        return make_demo_coco(data_root)
    from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
    from mobilenet_tasks.datasets.demo_cityscapes import make_demo_cityscapes
    summary = make_demo_cityscapes(data_root)
    convert_cityscapes(data_root)  # skips maps that are up to date
    return summary


def demo_config(task: str, spec: dict, args):
    """The demo config with data roots, schedule and work dir set."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, spec['config']))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    root = osp.join(ROOT, spec['data_root']).rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    if task == 'detection':
        for evaluator in ('val_evaluator', 'test_evaluator'):
            cfg[evaluator].ann_file = root + 'annotations/instances_val.json'
    if args.iters is not None:
        cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = args.iters
        cfg.default_hooks.checkpoint.interval = args.iters
        # The warm-up (first scheduler) stays within the run, the decay (last) ends
        # with it.
        warmup, decay = cfg.param_scheduler[0], cfg.param_scheduler[-1]
        if warmup is not decay and warmup.end >= args.iters:
            warmup.end = max(1, args.iters // 10)
            if decay.get('begin', 0) > warmup.end:
                decay.begin = warmup.end
        decay.end = args.iters
        if 'T_max' in decay:
            decay.T_max = args.iters - decay.get('begin', 0)
    cfg.work_dir = osp.join(args.work_dir, task)
    return cfg


def _last_checkpoint(work_dir: str):
    last = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last):
        return None
    with open(last) as f:
        path = f.read().strip()
    return path if osp.isfile(path) else None


def _tool(*args) -> None:
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f'error: {" ".join(map(str, args[:2]))} failed:\n'
                         f'{(proc.stdout + proc.stderr)[-3000:]}')
    return proc.stdout


def run_int8(task: str, cfg, checkpoint: str, args) -> dict:
    """QAT fine-tune of ``checkpoint``, then float32 / PTQ int8 / QAT int8 programs
    measured by int8_recipes.py; its rows (metric, ms, ratio, MB)."""
    config = osp.join(cfg.work_dir, osp.basename(TASKS[task]['config']))
    if not osp.isfile(config):  # the config the float run dumped (data roots set)
        cfg.dump(config)
    qat_dir = f'{cfg.work_dir}_qat'
    print(f'QAT fine-tune of {checkpoint} -> {qat_dir}', flush=True)
    start = time.time()
    _tool('tools/train.py', config, '--qat', '--load-from', checkpoint, '--work-dir',
          qat_dir, '--threads', str(args.threads))
    qat_minutes = (time.time() - start) / 60
    qat_ckpt = _last_checkpoint(qat_dir)
    int8_dir = f'{cfg.work_dir}_int8'
    print(f'int8 programs and their accuracy -> {int8_dir} (several minutes)',
          flush=True)
    _tool('tools/analysis_tools/int8_recipes.py', config, checkpoint, '--recipes',
          'all', '--qat', qat_ckpt, '--work-dir', int8_dir)
    stem = osp.splitext(osp.basename(config))[0]
    with open(osp.join(int8_dir, f'{stem}_recipes.json')) as f:
        measured = json.load(f)
    rows = measured['rows']
    rows['ptq'] = rows.pop('all')
    return dict(cpu=measured['cpu'], table=measured['table'], rows=rows,
                qat_checkpoint=qat_ckpt, qat_minutes=round(qat_minutes, 2))


def run_task(task: str, args) -> dict:
    from mmengine.runner import Runner

    spec = TASKS[task]
    start = time.time()
    data_root = osp.join(ROOT, spec['data_root'])
    summary = make_dataset(task, data_root)
    print(f'demo dataset: {data_root} '
          f'({"reused" if summary.get("reused") else "generated"})')
    cfg = demo_config(task, spec, args)
    reused = _last_checkpoint(cfg.work_dir) if args.reuse else None
    if reused:
        print(f'--reuse: {reused}, no training')
        return dict(model=spec['model'], config=spec['config'],
                    metric=spec['metric_name'], reused=reused,
                    int8=run_int8(task, cfg, reused, args))
    runner = Runner.from_cfg(cfg)
    before = _plain(runner.val_loop.run())
    train_start = time.time()
    runner.train()
    train_time = time.time() - train_start
    after = _plain(runner.test())
    result = dict(
        model=spec['model'],
        config=spec['config'],
        metric=spec['metric_name'],
        iters=cfg.train_cfg.max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        threads=args.threads,
        train_minutes=round(train_time / 60, 2),
        total_minutes=round((time.time() - start) / 60, 2),
        before=before.get(spec['metric']),
        after=after.get(spec['metric']),
        all_metrics=after)
    if task == 'segmentation':
        result.update(aAcc=after.get('aAcc'))
    if args.int8:
        result['int8'] = run_int8(task, cfg, _last_checkpoint(cfg.work_dir), args)
    return result


def _plain(metrics: dict) -> dict:
    """Metrics as JSON-able Python numbers (mmseg gives numpy floats)."""
    return {k: (round(float(v), 4) if hasattr(v, 'item') or isinstance(v, float)
                else v) for k, v in metrics.items()}


def report_int8(task: str, int8: dict) -> None:
    scale = 100.0 if task == 'detection' else 1.0
    rows = int8['rows']
    print(f'int8 on ExecuTorch + XNNPACK ({int8["cpu"]}, 1 thread):')
    for name, label in (('float32', 'float32'), ('ptq', 'post-training int8'),
                        ('qat', 'QAT int8')):
        row = rows[name]
        print(f'  {label:<20} {row["metric"]} {row["value"] * scale:6.2f}'
              f'{" x 100" if scale > 1 else ""}   {row["ms"]:7.2f} ms '
              f'({row["ratio"]:.2f} of float32)   {row["file_mb"]:.1f} MB')
    print(f'  QAT fine-tune: {int8["qat_minutes"]:.1f} min -> {int8["qat_checkpoint"]}')


def report(task: str, result: dict, work_dir: str) -> None:
    spec = TASKS[task]
    fmt = (lambda v: 'n/a' if v is None else spec['fmt'].format(v))
    print(f'\n== {task} demo ==')
    print(f'{result["model"]}, demo val split')
    if result.get('reused'):
        print(f'float checkpoint reused: {result["reused"]}')
        report_int8(task, result['int8'])
        return
    print(f'{result["metric"]} before training: {fmt(result["before"])}')
    extra = ''
    if task == 'detection':
        extra = f' (mAP@0.5 {fmt(result["all_metrics"].get("coco/bbox_mAP_50"))})'
    elif task == 'segmentation':
        extra = (' (mean over the classes present in the val split; pixel accuracy '
                 f'{fmt(result.get("aAcc"))})')
    print(f'{result["metric"]} after {result["iters"]} iterations of batch '
          f'{result["batch_size"]}: {fmt(result["after"])}{extra}')
    print(f'training took {result["train_minutes"]:.1f} min on {result["threads"]} '
          f'threads; this demo {result["total_minutes"]:.1f} min')
    print(f'checkpoint and logs: {osp.join(work_dir, task)}')
    if 'int8' in result:
        report_int8(task, result['int8'])


def main():
    args = parse_args()
    import torch
    torch.set_num_threads(args.threads)

    tasks = list(TASKS) if args.task == 'all' else [args.task]
    results = {}
    os.makedirs(args.work_dir, exist_ok=True)
    for task in tasks:
        results[task] = run_task(task, args)
        with open(osp.join(args.work_dir, 'demo_result.json'), 'w') as f:
            json.dump(results, f, indent=2)
    for task in tasks:
        report(task, results[task], args.work_dir)
    print(f'\nfigures: {osp.join(args.work_dir, "demo_result.json")}')


if __name__ == '__main__':
    main()
