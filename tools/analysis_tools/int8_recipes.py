"""Measure the int8 recipes of a runtime on a trained model: accuracy on the config's
test split (``tools/test.py``) and latency (1 thread, interleaved medians) of each,
beside the float32 program. The README's "int8 recipes" table comes from this tool.

    python tools/analysis_tools/int8_recipes.py CONFIG CHECKPOINT [--runtime executorch]
        [--recipes all,hswish-int8,se-float,head-float] [--num-images 32]
        [--qat QAT_CHECKPOINT] [--repeats 20] [--work-dir work_dirs/int8_recipes]

``--qat`` adds the row of a quantization-aware fine-tune of CHECKPOINT
(``tools/train.py CONFIG --qat --load-from CHECKPOINT``), exported with its trained
ranges: float, post-training and QAT int8 side by side (``tools/misc/demo.py --int8``).

Recipes (ExecuTorch, ``mobilenet_tasks.deployment.executorch_export``): ``all``
(everything XNNPACK's quantizer takes; h-swish runs in float between quantize nodes;
activation ranges from XNNPACK's histogram observer), ``minmax`` (the same with the
observed min/max ranges),
``hswish-int8`` (h-swish and hard-sigmoid written on quantized add / clamp / multiply),
``se-float`` (the squeeze-and-excitation branches float), ``head-float`` (the detection
or decode head float), ``stem-float`` (the first convolution float). Calibration:
``--num-images`` of the config's train split, as the exporters default to.

Prints a markdown table (recipe, metric, its loss against float32, latency, int8 /
float32 latency) and writes it with the figures as JSON into the work dir. The CPU is
named in the output: the speed verdict belongs to it.
"""
import argparse
import json
import sys

RECIPES = {
    'all': dict(keep_float=(), hswish='float'),
    'minmax': dict(keep_float=(), hswish='float', observer='minmax'),
    'hswish-int8': dict(keep_float=(), hswish='int8'),
    'se-float': dict(keep_float=('se', ), hswish='float'),
    'head-float': dict(keep_float=('head', ), hswish='float'),
    'stem-float': dict(keep_float=('stem', ), hswish='float'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Measure int8 recipes: accuracy and '
                                     'latency of each against float32')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--runtime', choices=('executorch', ), default='executorch')
    parser.add_argument('--recipes', default='all,minmax,hswish-int8,se-float,head-float',
                        help=f'comma-separated among {", ".join(RECIPES)}')
    parser.add_argument('--num-images', type=int, default=32)
    parser.add_argument('--qat', metavar='QAT_CHECKPOINT',
                        help='also measure this QAT checkpoint of the model')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--work-dir', default='work_dirs/int8_recipes')
    parser.add_argument('--reuse', action='store_true',
                        help='reuse the .pte files an interrupted run left in the work '
                        'dir (they are not checked against the recipe)')
    args = parser.parse_args(argv)
    import os
    if args.qat is not None and not os.path.isfile(args.qat):
        parser.error(f'--qat {args.qat}: no such file')
    args.recipes = [r.strip() for r in args.recipes.split(',') if r.strip()]
    bad = [r for r in args.recipes if r not in RECIPES]
    if bad:
        parser.error(f'unknown recipe(s) {bad}; choose among {list(RECIPES)}')
    return args


def _metric(config, path, work_dir):
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / 'tools/test.py'), config, path,
                           '--work-dir', str(work_dir), '--threads', '1'],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f'error: tools/test.py failed on {path}:\n'
                         f'{(proc.stdout + proc.stderr)[-2000:]}')
    metrics = json.loads((Path(work_dir) / 'test_metrics.json').read_text())['metrics']
    for key in ('coco/bbox_mAP', 'mIoU'):
        if key in metrics:
            return key, float(metrics[key])
    raise SystemExit(f'error: no mAP or mIoU in {metrics}')


def main(argv=None) -> int:
    args = parse_args(argv)
    import os
    import statistics
    import time
    import warnings
    from pathlib import Path

    import numpy as np
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    import torch
    torch.set_num_threads(1)
    from mobilenet_tasks.analysis.machine import cpu_flags, cpu_name
    from mobilenet_tasks.backends import open_backend
    from mobilenet_tasks.deployment import load_model
    from mobilenet_tasks.deployment.executorch_export import export_executorch_loaded
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model, cfg, meta = load_model(args.config, args.checkpoint)
    files = {}
    stem = Path(args.config).stem
    for name in ['float32'] + args.recipes:
        path = work / f'{stem}_{name}.pte'
        files[name] = str(path)
        if args.reuse and path.is_file():
            continue
        print(f'exporting {name} -> {path}', file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            report = export_executorch_loaded(
                model, cfg, meta, args.config, path, int8=name != 'float32',
                num_images=args.num_images, **RECIPES.get(name, {}))
        if report.not_delegated:
            print(f'  not delegated: {dict(report.not_delegated)}', file=sys.stderr)
    if args.qat:
        path = work / f'{stem}_qat.pte'
        files['qat'] = str(path)
        if not (args.reuse and path.is_file()):
            print(f'exporting qat -> {path}', file=sys.stderr, flush=True)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                qat_model, qat_cfg, qat_meta = load_model(args.config, args.qat)
                export_executorch_loaded(qat_model, qat_cfg, qat_meta, args.config,
                                         path)
    rows = {}
    for name, path in files.items():
        print(f'evaluating {name}', file=sys.stderr, flush=True)
        key, value = _metric(args.config, path, work / name)
        rows[name] = dict(metric=key, value=value, file_mb=os.path.getsize(path) / 1e6)
    runners = {name: open_backend(path, threads=1) for name, path in files.items()}
    x = np.random.default_rng(0).standard_normal(
        next(iter(runners.values())).input_shape).astype(np.float32)
    times = {name: [] for name in runners}
    for runner in runners.values():
        runner.run(x)
    names = list(runners)
    for r in range(args.repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            runners[name].run(x)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times['float32'])
    scale = 100.0 if rows['float32']['metric'] == 'coco/bbox_mAP' else 1.0
    flags = ', '.join(k for k, v in (cpu_flags() or {}).items() if v)
    lines = [f'{args.config} on {cpu_name()} ({flags}), ExecuTorch + XNNPACK, 1 '
             f'thread, median of {args.repeats}',
             '',
             f'| recipe | {rows["float32"]["metric"]}{" x 100" if scale > 1 else ""} '
             '| loss | ms | / float32 | MB |',
             '|---|---|---|---|---|---|']
    for name in files:
        ms = statistics.median(times[name]) * 1000
        rows[name].update(ms=ms, ratio=ms / (base * 1000))
        loss = (rows['float32']['value'] - rows[name]['value']) * scale
        lines.append(f'| {name} | {rows[name]["value"] * scale:.2f} | {loss:+.2f} | '
                     f'{ms:.2f} | {rows[name]["ratio"]:.3f} | '
                     f'{rows[name]["file_mb"]:.2f} |')
    table = '\n'.join(lines)
    print(table)
    (work / f'{stem}_recipes.json').write_text(json.dumps(
        dict(config=args.config, checkpoint=args.checkpoint, cpu=cpu_name(),
             rows=rows, table=table), indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
