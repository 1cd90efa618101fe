"""Params, MAdds and CPU latency of our detection and segmentation configs and of the
stock peers, on four backends, with the paper's speed ratios computed within one run.

What is timed (the same definition for ours and for the peers): the network on one
preprocessed float32 ``1 x 3 x H x W`` input, batch 1, nothing else (no image decoding,
resizing, normalisation, box decoding or NMS):

- detection: backbone + neck + head, the raw per-level class and box outputs
  (:class:`~mobilenet_tasks.deployment.DetectorRawOutputs`, an mmdet detector's
  ``mode='tensor'`` forward, what ``export_model(..., nms=False)`` exports;
  torchvision's ``ssdlite320_mobilenet_v3_large``: ``head(backbone(x))`` without its
  transform and postprocess);
- segmentation: backbone + decode head + the bilinear resize of the logits to the input
  size (:class:`~mobilenet_tasks.deployment.SegmentorLogits`, the segmentor's
  ``encode_decode``).

Backends: ``eager`` (PyTorch, ``torch.inference_mode``), ``fused`` (PyTorch with every
BN folded into its conv, :func:`~mobilenet_tasks.deployment.fuse_conv_bn`), ``ort``
(onnxruntime fp32, CPUExecutionProvider, on the graph
:func:`~mobilenet_tasks.deployment.export_loaded` writes from the same weights),
``ort-int8`` (that graph quantized by :func:`~mobilenet_tasks.deployment.quantize_model`,
the project's recipe, calibrated on a few random-noise images: good enough for latency,
not for accuracy). Weights are random (initialised as the config says): latency does
not depend on their values. Denormals are flushed to zero on both runtimes, so random
weights cannot make a model slower than trained ones would.

Latency: for each thread count (1 and all cores by default; ``torch.set_num_threads``,
onnxruntime ``intra_op_num_threads`` with ``inter_op_num_threads=1``), every runner of
one task (model x backend) is warmed up, then timed once per round, in an order rotated
each round, for ``repeats`` rounds; the median is reported. Interleaving spreads drifts
in machine load over all runners alike, so the ratios are computed within one run.

Params and MAdds come from :func:`mobilenet_tasks.analysis.complexity.count_complexity`
on the very module that is timed, at the benchmark's input size.

Accuracy (for the Figure 1 plot and the table) is never measured here: ours is the
paper's figure for the architecture the config builds (Table 6 mAP on COCO test-dev,
Table 7 mIoU on Cityscapes val, Table 8 mIoU on Cityscapes test); the peers' is what
mmdet / mmseg (metafiles) and torchvision (weights metadata) publish for their trained
weights.

The parts: :mod:`.catalogue` (what is measured), :mod:`.build` (the backends made
ready), :mod:`.timing`, :mod:`.report` (ratios, markdown, JSON), :mod:`.figure`; this
module runs them and re-exports their names, so that one namespace serves the tool.
"""
import datetime
import gc
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from mobilenet_tasks.utils.paper import PAPER_LATENCY_MS

from .build import (Built, TorchvisionSSDTensor, build, calibration_config,  # noqa
                    calibration_images, check_size, export_onnx, fidelity, fold_bn,
                    ort_session, quantize_int8, quiet_mmengine, size_hint)
from .catalogue import (BACKEND_LABELS, BACKENDS, DEFAULT_MODELS,  # noqa: F401
                        DET_SIZE, LRASPP_V3, MMDET_SSDLITE, MMSEG_LRASPP, PEERS,
                        QUICK_DET_SIZE, QUICK_MODELS, QUICK_SEG_SIZE, RASPP_V2, RATIOS,
                        SEG_SIZE, TV_SSDLITE, V3_REDUCED, WHAT_IS_TIMED,
                        BenchmarkError, Entry, resolve)
from .complexity import count_complexity
from .figure import plot_figure1  # noqa: F401
from .report import compute_ratios, format_ms, format_report, save_json  # noqa
from .timing import Runner, backend_runner, time_runners, torch_runner  # noqa


@dataclass
class Settings:
    models: Sequence[str] = DEFAULT_MODELS
    peers: Sequence[str] = tuple(PEERS)
    backends: Sequence[str] = BACKENDS
    peer_backends: Sequence[str] = ('eager', 'fused', 'ort')
    det_size: Tuple[int, int] = DET_SIZE
    seg_size: Tuple[int, int] = SEG_SIZE
    threads: Sequence[int] = ()  # default: 1 and os.cpu_count()
    warmup: int = 2
    repeats: int = 10
    calib: int = 4  # random-noise images to calibrate int8 on
    global_pool: bool = False
    ratio_runners_only: bool = False  # time only what the ratio rows use (+ eager)
    quick: bool = False
    work_dir: str = 'work_dirs/benchmark'
    log: Callable[[str], None] = field(default=lambda msg: _log(msg))


_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f'[{time.perf_counter() - _T0:7.1f} s] {msg}', file=sys.stderr, flush=True)


def quick_settings(**overrides) -> Settings:
    """The settings of ``--quick``: the models of the ratio rows at small inputs, only
    the backends those rows use (and eager), one warm-up and one timed round."""
    values = dict(models=QUICK_MODELS, det_size=QUICK_DET_SIZE, seg_size=QUICK_SEG_SIZE,
                  warmup=1, repeats=1, calib=1, global_pool=True,
                  ratio_runners_only=True, quick=True)
    values.update(overrides)
    return Settings(**values)


def _check_settings(s: Settings) -> List[int]:
    bad = [b for b in list(s.backends) + list(s.peer_backends) if b not in BACKENDS]
    if bad:
        raise BenchmarkError(f'unknown backend(s) {bad}; known: {list(BACKENDS)}')
    for label, size in (('det size', s.det_size), ('seg size', s.seg_size)):
        if len(size) != 2 or min(size) < 32:
            raise BenchmarkError(f'{label} must be two ints >= 32 (H W), got {size}')
    if s.warmup < 0 or s.repeats < 1 or s.calib < 1:
        raise BenchmarkError(f'warm-up >= 0, repeats >= 1 and calib >= 1 needed, got '
                             f'{s.warmup}, {s.repeats}, {s.calib}')
    threads = sorted(set(s.threads or (1, os.cpu_count() or 1)))
    if not threads or threads[0] < 1:
        raise BenchmarkError(f'thread counts must be >= 1, got {list(s.threads)}')
    return threads


def run_benchmark(settings: Settings) -> dict:
    """Measure every model of ``settings`` and return the report (see the module doc
    and :func:`format_report`).

    Raises:
        BenchmarkError: An unknown model or backend, a bad size or count, or an input
            size a model cannot take (checked before anything is timed).
    """
    torch_threads = torch.get_num_threads()
    try:
        with quiet_mmengine():
            return _run_benchmark(settings)
    finally:
        torch.set_num_threads(torch_threads)
        torch.set_flush_denormal(False)


def _run_benchmark(s: Settings) -> dict:
    threads = _check_settings(s)
    log = s.log
    started = time.perf_counter()
    entries, seen = [], set()
    for name in s.models:
        entry = resolve(name, s.global_pool)
        if entry.name not in seen:
            entries.append(entry)
            seen.add(entry.name)
    tasks = {e.task for e in entries}
    for name in s.peers:
        entry = resolve(name)
        if entry.source == 'ours':
            raise BenchmarkError(f'{name}: not a peer; peers: {", ".join(PEERS)}')
        if entry.task in tasks and entry.name not in seen:
            entries.append(entry)
            seen.add(entry.name)
    sizes = {'detection': tuple(s.det_size), 'segmentation': tuple(s.seg_size)}

    work_dir = Path(s.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    flush = torch.set_flush_denormal(True)
    load_before = _load_average()

    # Build everything and check the sizes first: fail before any long measurement.
    built = {}
    for entry in entries:
        log(f'building {entry.name}')
        built[entry.name] = build(entry)
    errors = []
    for entry in entries:
        size = sizes[entry.task]
        reason = check_size(built[entry.name], size)
        if reason:
            errors.append(f'{entry.name} cannot take a {size[0]}x{size[1]} input '
                          f'({reason}); {size_hint(entry, size)}')
    if errors:
        raise BenchmarkError('\n'.join(errors))

    models = {}
    for entry in entries:
        size = sizes[entry.task]
        b = built[entry.name]
        log(f'counting {entry.name} at {size[0]}x{size[1]}')
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            counts = count_complexity(b.timed, size)
        paper = entry.paper or {}
        key = (str(paper.get('Table')), str(paper.get('Row')))
        models[entry.name] = dict(
            name=entry.name, short=entry.short, source=entry.source, task=entry.task,
            config=_display_path(entry.config),
            overrides=entry.cfg_options, paper_row=paper or None,
            input_size=list(size), params=int(counts['params']),
            madds=float(counts['madds']), accuracy=entry.accuracy,
            paper_latency_ms=PAPER_LATENCY_MS.get(key),
            latency_ms={}, runs_ms={}, skipped={}, int8_fidelity=None)

    for task in ('detection', 'segmentation'):
        task_entries = [e for e in entries if e.task == task]
        if task_entries:
            _measure_task(task_entries, built, models, sizes[task], threads, s, work_dir)

    ratios = compute_ratios(models, threads)
    import onnxruntime
    return dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        machine=dict(cpu=_cpu_name(), cpu_count=os.cpu_count(),
                     platform=platform.platform(), python=platform.python_version(),
                     torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                     load_average_before=load_before,
                     load_average_after=_load_average()),
        warnings=_busy_machine_warnings(models, threads),
        settings=dict(quick=s.quick, threads=threads, warmup=s.warmup,
                      repeats=s.repeats, det_size=list(s.det_size),
                      seg_size=list(s.seg_size), global_pool=s.global_pool,
                      backends=list(s.backends), peer_backends=list(s.peer_backends),
                      ratio_runners_only=s.ratio_runners_only,
                      onnxruntime_session='CPUExecutionProvider, intra_op_num_threads = '
                      'the thread count, inter_op_num_threads 1, sequential, denormals '
                      'as zero, default graph optimisations and spinning',
                      int8_calibration=f'{s.calib} random-noise image(s) through '
                      "the config's normalisation (enough for latency, not for "
                      'accuracy); quantize_model: QDQ, int8 weights per channel, uint8 '
                      'activations, MinMax, post-processing float',
                      weights='random (the configs\' initialisation)',
                      denormals_flushed=bool(flush)),
        what_is_timed=WHAT_IS_TIMED,
        models=list(models.values()),
        ratios=ratios,
        seconds=round(time.perf_counter() - started, 1))


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _busy_machine_warnings(models: Dict[str, dict], threads: Sequence[int]
                           ) -> List[str]:
    """Signs that other processes competed for the cores: a runner slower on all
    threads than on one (on an idle machine more threads never cost 1.5x)."""
    if len(threads) < 2:
        return []
    slow = []
    for m in models.values():
        for backend, per_thread in m['latency_ms'].items():
            one, most = per_thread.get('1'), per_thread.get(str(threads[-1]))
            if one and most and most > 1.5 * one:
                slow.append(f'{m["name"]} {backend} ({format_ms(one)} -> '
                            f'{format_ms(most)} ms)')
    if not slow:
        return []
    return [f'{len(slow)} runner(s) were over 1.5x slower on {threads[-1]} threads than '
            f'on 1: {"; ".join(slow[:4])}{"; ..." if len(slow) > 4 else ""}. Other '
            'processes were competing for the cores (a thread that waits for a busy '
            'core stalls every parallel region): the multi-thread figures of this run '
            'are not usable; run on an idle machine.']


def _display_path(path: Optional[str]) -> Optional[str]:
    """A config path relative to the checkout or the site-packages it is in."""
    if path is None:
        return None
    from mobilenet_tasks.utils.model_index import ROOT
    path = Path(path).resolve()
    for base in (ROOT, Path(np.__file__).resolve().parents[1]):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def _cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor()


def _measure_task(entries, built, models, size, threads, s: Settings, work_dir):
    """Prepare the backends of one task's models, then time them interleaved, for each
    thread count."""
    log = s.log
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *size, generator=gen)
    array = x.numpy()
    images = None
    modules, onnx_files = {}, {}
    needed = {side for spec in RATIOS for side in (spec['num'], spec['den'])}
    for entry in entries:
        record = models[entry.name]
        backends = s.backends if entry.source == 'ours' else s.peer_backends
        if s.ratio_runners_only:
            backends = [b for b in backends if b == 'eager' or (entry.name, b) in needed]
        timed = built[entry.name].timed
        for backend in backends:
            if backend == 'eager':
                modules[entry.name, backend] = timed
            elif backend == 'fused':
                fused, report = fold_bn(timed)
                record['bn_folded'] = report.num_folded
                record['bn_left'] = dict(report.left)
                modules[entry.name, backend] = fused
        if {'ort', 'ort-int8'} & set(backends):
            stem = f'{entry.name.replace(":", "_")}_{size[0]}x{size[1]}'
            log(f'exporting {entry.name} to ONNX')
            try:
                fp32 = export_onnx(built[entry.name], size, work_dir / f'{stem}.onnx')
            except NotImplementedError as e:
                for backend in {'ort', 'ort-int8'} & set(backends):
                    record['skipped'][backend] = str(e)
                continue
            if 'ort' in backends:
                onnx_files[entry.name, 'ort'] = fp32
            if 'ort-int8' in backends:
                log(f'quantizing {entry.name} to int8')
                images = images or calibration_images(work_dir / 'calibration', size,
                                                      s.calib)
                record['int8'] = quantize_int8(built[entry.name], fp32, str(
                    work_dir / f'{stem}_int8.onnx'), size, images)
                onnx_files[entry.name, 'ort-int8'] = record['int8']['path']

    for n in threads:
        torch.set_num_threads(n)
        runners = [torch_runner(name, backend, module, x)
                   for (name, backend), module in modules.items()]
        sessions = {k: ort_session(path, n) for k, path in onnx_files.items()}
        log(f'{len(sessions)} onnxruntime sessions ready')
        runners += [backend_runner(name, backend, session, array)
                    for (name, backend), session in sessions.items()]
        order = {e.name: i for i, e in enumerate(entries)}
        runners.sort(key=lambda r: (order[r.name], BACKENDS.index(r.backend)))
        if n == threads[0]:
            for entry in entries:  # int8 against fp32, on the benchmark's input
                k32, k8 = (entry.name, 'ort'), (entry.name, 'ort-int8')
                if k32 in sessions and k8 in sessions:
                    models[entry.name]['int8_fidelity'] = fidelity(
                        sessions[k32].run(array), sessions[k8].run(array), entry.task)
        log(f'timing {len(runners)} runners at {size[0]}x{size[1]}, {n} thread(s): '
            f'{s.warmup} warm-up + {s.repeats} rounds')
        time_runners(runners, s.warmup, s.repeats)
        for runner in runners:
            runs = [round(t * 1000, 3) for t in runner.times]
            record = models[runner.name]
            record['runs_ms'].setdefault(runner.backend, {})[str(n)] = runs
            record['latency_ms'].setdefault(runner.backend, {})[str(n)] = round(
                statistics.median(runs), 3)
        del runners, sessions
        gc.collect()
        log('timed')
