"""Params, MAdds, CPU latency and peak memory of our configs and the stock peers on
PyTorch, onnxruntime, ExecuTorch and OpenVINO (fp32 and int8), with the paper's speed
ratios measured within one run, and an accuracy-vs-latency plot (Figure 1).

    python tools/analysis_tools/benchmark.py [MODEL ...] [--quick]
        [--peers mmdet mmseg torchvision | --peers none]
        [--backends eager fused ort ort-int8 et et-int8 ov ov-int8]
        [--peer-backends ...] [--det-size 320 320] [--seg-size 1024 2048]
        [--threads 1 2] [--warmup 2] [--repeats 10] [--calib 4] [--global-pool]
        [--no-memory] [--work-dir work_dirs/benchmark] [--out REPORT.json]
        [--plot fig1.png]

MODEL: model-index names or config paths (detection or segmentation); default: Table 6's
V3, V3†, V3-Small, V3-Small†, V2, MnasNet and V1 SSDLite, Table 7's rows 1, 4, 8 and 11.
Peers (measured for the tasks the models cover): mmdet's
``ssdlite_mobilenetv2-scratch_8xb24-600e_coco`` and mmseg's
``mobilenet-v3-d8_lraspp_4xb4-320k_cityscapes-512x1024`` (from the installed packages'
``.mim/configs``), torchvision's ``ssdlite320_mobilenet_v3_large`` (PyTorch only: the
project's exporters take mmdet / mmseg models, its file backends are reported skipped).

Backends: ``eager``, ``fused`` (BN folded), ``ort`` / ``ort-int8`` (onnxruntime),
``et`` / ``et-int8`` (ExecuTorch, XNNPACK), ``ov`` / ``ov-int8`` (OpenVINO, the same
ONNX file as ``ort``; NNCF int8). A (model, backend) whose file cannot be made, opened
or run is reported under ``skipped`` with the reason; the rest is measured.

Latency: the median of ``--repeats`` timed rounds after ``--warmup`` rounds, every
(model, backend) of a task interleaved in each round, at 1 thread and at all cores.
Each model's fastest backend is named; ratios between two models are given for every
backend measured on both (eager first) and on the numerator's fastest runtime.
Memory: the peak resident memory of each (model, backend) timed (but ``fused``) in a
fresh process that opens the file and runs it, and the model's share of it (the peak
less the memory after importing the runtime), with the file's size; ``--no-memory``
skips it. What is timed, the backends and where the accuracies come from: see
``mobilenet_tasks.analysis.benchmark``. ``--quick`` (for tests; its figures mean
little): the V3† SSDLite on every backend, Table 7 rows 1 and 8 and the peers at small
inputs (detection 160x160, segmentation 392x392 with ``--global-pool``) on the
backends the ratio rows use (and eager), one warm-up and one timed round, 1
calibration image, memory at the least thread count.

Prints markdown tables; writes every number to ``--out`` (default
``WORK_DIR/benchmark.json``) and the plot (each model on its fastest runtime) to
``--plot``. Exit status 2 for a bad request (unknown model, input too small for a
model), with a message.
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None):
    # The choices and sizes from the light catalogue: mobilenet_tasks.analysis.benchmark
    # (torch, the models) loads in main() once the arguments are parsed, so --help and
    # an argument error answer at once.
    from mobilenet_tasks.analysis import catalogue as bm
    parser = argparse.ArgumentParser(
        description='Params, MAdds, latency and peak memory (PyTorch eager, BN folded, '
        'onnxruntime, ExecuTorch and OpenVINO, fp32 and int8) of our configs and the '
        'stock peers')
    parser.add_argument('models', nargs='*', metavar='MODEL',
                        help='model-index names or config paths (default: Table 6 and '
                        'Table 7 rows, see the module doc)')
    parser.add_argument('--quick', action='store_true',
                        help="the ratio rows' models at small inputs, one round "
                        '(for tests)')
    parser.add_argument('--peers', nargs='+', metavar='PEER',
                        help='peers to measure: mmdet, mmseg, torchvision (or their '
                        "full names), or 'none' (default: all three)")
    parser.add_argument('--backends', nargs='+', choices=bm.BACKENDS,
                        help='backends for our models (default: all, '
                        f'{" ".join(bm.BACKENDS)})')
    parser.add_argument('--peer-backends', nargs='+', choices=bm.BACKENDS,
                        help='backends for the peers (default: all; torchvision '
                        'has no exporter here: its file backends are skipped)')
    parser.add_argument('--det-size', type=int, nargs=2, metavar=('H', 'W'),
                        help=f'detection input (default {bm.DET_SIZE[0]} '
                        f'{bm.DET_SIZE[1]}; quick {bm.QUICK_DET_SIZE[0]} '
                        f'{bm.QUICK_DET_SIZE[1]})')
    parser.add_argument('--seg-size', type=int, nargs=2, metavar=('H', 'W'),
                        help=f'segmentation input (default {bm.SEG_SIZE[0]} '
                        f'{bm.SEG_SIZE[1]}; quick {bm.QUICK_SEG_SIZE[0]} '
                        f'{bm.QUICK_SEG_SIZE[1]})')
    parser.add_argument('--threads', type=int, nargs='+',
                        help=f'thread counts (default: 1 and {os.cpu_count()})')
    parser.add_argument('--warmup', type=int, help='warm-up rounds (default 2; quick 1)')
    parser.add_argument('--repeats', type=int,
                        help='timed rounds, median reported (default 10; quick 1)')
    parser.add_argument('--calib', type=int,
                        help='random-noise images to calibrate int8 on (default 4; '
                        'quick 1)')
    parser.add_argument('--global-pool', action='store_true',
                        help="our LR-ASPP heads pool globally instead of the paper's "
                        '49x49 (which needs inputs of at least 769x769); on in --quick')
    parser.add_argument('--no-memory', action='store_true',
                        help='do not measure peak memory (a fresh process per model, '
                        'backend and thread count)')
    parser.add_argument('--reuse-files', action='store_true',
                        help='open the model files an earlier run of the same models '
                        'and sizes left in WORK_DIR instead of exporting again (for '
                        'timing only: their weights are that run\'s)')
    parser.add_argument('--work-dir', default=str(ROOT / 'work_dirs/benchmark'),
                        help='model files and the report (default %(default)s)')
    parser.add_argument('--out',
                        help='the JSON report (default WORK_DIR/benchmark.json)')
    parser.add_argument('--plot', metavar='PNG',
                        help="draw accuracy vs latency (1 thread, each model's "
                        'fastest runtime) to this PNG')
    return parser.parse_args(argv)


def settings_from_args(args):
    from mobilenet_tasks.analysis import benchmark as bm
    values = dict(work_dir=args.work_dir)
    if args.models:
        values['models'] = tuple(args.models)
    if args.peers:
        values['peers'] = () if [p.lower() for p in args.peers] == ['none'] else \
            tuple(args.peers)
    for key in ('backends', 'peer_backends', 'threads'):
        if getattr(args, key):
            values[key] = tuple(getattr(args, key))
    for key in ('det_size', 'seg_size'):
        if getattr(args, key):
            values[key] = tuple(getattr(args, key))
    for key in ('warmup', 'repeats', 'calib'):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.global_pool:
        values['global_pool'] = True
    if args.no_memory:
        values['memory'] = False
    if args.reuse_files:
        values['reuse_files'] = True
    return bm.quick_settings(**values) if args.quick else bm.Settings(**values)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.analysis import benchmark as bm
    try:
        report = bm.run_benchmark(settings_from_args(args))
    except bm.BenchmarkError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(bm.format_report(report))
    out = bm.save_json(report, args.out or Path(args.work_dir) / 'benchmark.json')
    print(f'\nreport: {out}')
    if args.plot:
        print(f'plot:   {bm.plot_figure1(report, args.plot)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
