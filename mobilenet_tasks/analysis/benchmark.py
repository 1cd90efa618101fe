"""Params, MAdds, CPU latency and peak memory of our detection and segmentation
configs and of the stock peers, on eight backends (PyTorch and three file runtimes, fp32
and int8), with the paper's speed ratios computed within one run.

What is timed (the same definition for ours and for the peers, on every backend): the
network on one preprocessed float32 ``1 x 3 x H x W`` input, batch 1, nothing else (no
image decoding, resizing, normalisation, box decoding or NMS):

- detection: backbone + neck + head, the raw per-level class and box outputs
  (:class:`~mobilenet_tasks.deployment.DetectorRawOutputs`, an mmdet detector's
  ``mode='tensor'`` forward, what ``export_model(..., nms=False)`` exports;
  torchvision's ``ssdlite320_mobilenet_v3_large``: ``head(backbone(x))`` without its
  transform and postprocess);
- segmentation: backbone + decode head + the bilinear resize of the logits to the input
  size (:class:`~mobilenet_tasks.deployment.SegmentorLogits`, the segmentor's
  ``encode_decode``).

Backends (:data:`~.catalogue.BACKENDS`): in this process, ``eager`` (PyTorch,
``torch.inference_mode``) and ``fused`` (PyTorch with every BN folded into its conv,
:func:`~mobilenet_tasks.deployment.fuse_conv_bn`); then model files, all from the same
weights, each made by the project's exporter and opened by a runtime of
:mod:`mobilenet_tasks.backends` (the table: :data:`.runtimes.FILE_BACKENDS`):
``ort`` / ``ort-int8`` (onnxruntime CPUExecutionProvider on the ONNX graph of
:func:`~mobilenet_tasks.deployment.export_loaded`, and on that graph quantized by
:func:`~mobilenet_tasks.deployment.quantize_model`, the project's QDQ recipe), ``et`` /
``et-int8`` (ExecuTorch programs lowered to XNNPACK, fp32 and PT2E int8 with
XNNPACKQuantizer, :mod:`mobilenet_tasks.deployment.executorch_export`), ``ov`` /
``ov-int8`` (OpenVINO's CPU plugin on the very ONNX file of ``ort``, and on its NNCF
int8 IR, :mod:`mobilenet_tasks.deployment.openvino_export`). int8 is calibrated on a
few random-noise images through the config's preprocessing: good enough for latency,
not for accuracy. torchvision's SSDLite has no exporter here (the project's exporters
read mmdet / mmseg configs): its file backends are ``skipped``, as is any (model,
backend) whose file cannot be made, opened or run (the reason is recorded, the rest is
measured). Weights are random (initialised as the config says): latency does not depend
on their values. Denormals are flushed to zero in PyTorch, onnxruntime and OpenVINO
(ExecuTorch has no such switch), so random weights cannot make a model slower than
trained ones would.

Latency: for each thread count (1 and all cores by default; ``torch.set_num_threads``,
onnxruntime ``intra_op_num_threads`` with ``inter_op_num_threads=1``, ExecuTorch's
XNNPACK threadpool, OpenVINO's inference threads), every runner of one task (model x
backend) is run once (a check that it runs), warmed up, then timed once per round, in
an order rotated each round, for ``repeats`` rounds; the median is reported.
Interleaving spreads drifts in machine load over all runners alike, so the ratios are
computed within one run. Each model's ``fastest`` backend at each thread count is
named, and the ratios between two models are also given on the numerator's fastest.

Memory (:mod:`.memory`, off with ``memory=False``): for every (model, backend) timed
but ``fused``, a fresh process opens the file (eager: builds the model) and runs it
twice on zeros; its peak resident set, its resident set after importing the runtime,
and their difference (the model's share) are reported, at the least thread count timed
(:func:`.measure.memory_threads`), with the file's size on disk.

Params and MAdds come from :func:`mobilenet_tasks.analysis.complexity.count_complexity`
on the very module that is timed, at the benchmark's input size.

Accuracy (for the Figure 1 plot and the table) is never measured here: ours is the
paper's figure for the architecture the config builds (Table 6 mAP on COCO test-dev,
Table 7 mIoU on Cityscapes val, Table 8 mIoU on Cityscapes test); the peers' is what
mmdet / mmseg (metafiles) and torchvision (weights metadata) publish for their trained
weights.

The parts: :mod:`.catalogue` (what is measured), :mod:`.build` (the backends made
ready), :mod:`.runtimes` (the file backends' table), :mod:`.measure` (one task timed),
:mod:`.timing`, :mod:`.memory`, :mod:`.machine`, :mod:`.report` (ratios, fastest,
markdown, JSON), :mod:`.figure`; this module runs them and re-exports their names, so
that one namespace serves the tool.
"""
import datetime
import os
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
from .machine import cpu_flags, cpu_name, load_average, machine_info  # noqa: F401
from .measure import backends_for, measure_task, memory_threads  # noqa: F401
from .memory import file_mb, measure_file, measure_pytorch  # noqa: F401
from .report import (compute_ratios, fastest, format_ms, format_report,  # noqa
                     save_json)
from .runtimes import FILE_BACKENDS, ModelFiles, Unavailable, describe  # noqa: F401
from .timing import Runner, backend_runner, time_runners, torch_runner  # noqa


@dataclass
class Settings:
    models: Sequence[str] = DEFAULT_MODELS
    peers: Sequence[str] = tuple(PEERS)
    backends: Sequence[str] = BACKENDS
    peer_backends: Sequence[str] = BACKENDS  # those a peer has no exporter for: skipped
    det_size: Tuple[int, int] = DET_SIZE
    seg_size: Tuple[int, int] = SEG_SIZE
    threads: Sequence[int] = ()  # default: 1 and os.cpu_count()
    warmup: int = 2
    repeats: int = 10
    calib: int = 4  # random-noise images to calibrate int8 on
    global_pool: bool = False
    ratio_runners_only: bool = False  # time only what the ratio rows use (+ eager)
    all_runtimes_for: Sequence[str] = ()  # ... and every backend of these models
    memory: bool = True  # peak memory of each runner timed, in fresh processes
    reuse_files: bool = False  # open the files an earlier run left in work_dir
    quick: bool = False  # memory at the least thread count only
    work_dir: str = 'work_dirs/benchmark'
    log: Callable[[str], None] = field(default=lambda msg: _log(msg))


_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f'[{time.perf_counter() - _T0:7.1f} s] {msg}', file=sys.stderr, flush=True)


def quick_settings(**overrides) -> Settings:
    """The settings of ``--quick``: the models of the ratio rows at small inputs, only
    the backends those rows use (those not marked ``quick=False``) and eager, every
    backend of the V3† SSDLite, one warm-up and one timed round, memory at the least
    thread count."""
    values = dict(models=QUICK_MODELS, det_size=QUICK_DET_SIZE, seg_size=QUICK_SEG_SIZE,
                  warmup=1, repeats=1, calib=1, global_pool=True,
                  ratio_runners_only=True, all_runtimes_for=(V3_REDUCED, ), quick=True)
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
    load_before = load_average()

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
            latency_ms={}, runs_ms={}, skipped={}, fastest={}, exports={},
            file_mb={}, memory_mb={}, memory_skipped={}, int8_fidelity={})

    for task in ('detection', 'segmentation'):
        task_entries = [e for e in entries if e.task == task]
        if task_entries:
            measure_task(task_entries, built, models, sizes[task], threads, s, work_dir)
    for record in models.values():
        record['fastest'] = fastest(record)

    ratios = compute_ratios(models, threads)
    return dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        machine=dict(machine_info(), load_average_before=load_before,
                     load_average_after=load_average()),
        warnings=_busy_machine_warnings(models, threads),
        settings=dict(quick=s.quick, threads=threads, warmup=s.warmup,
                      repeats=s.repeats, det_size=list(s.det_size),
                      seg_size=list(s.seg_size), global_pool=s.global_pool,
                      backends=list(s.backends), peer_backends=list(s.peer_backends),
                      ratio_runners_only=s.ratio_runners_only, reuse_files=s.reuse_files,
                      all_runtimes_for=list(s.all_runtimes_for), memory=s.memory,
                      memory_threads=memory_threads(s, threads),
                      runtimes=describe(),
                      onnxruntime_session='CPUExecutionProvider, intra_op_num_threads = '
                      'the thread count, inter_op_num_threads 1, sequential, denormals '
                      'as zero, default graph optimisations and spinning',
                      executorch_session='XNNPACK delegate; the process-wide '
                      'threadpool reset to the thread count when the programs of that '
                      'count are opened',
                      openvino_session='CPU plugin, PERFORMANCE_HINT LATENCY, one '
                      'stream, INFERENCE_NUM_THREADS = the thread count, precision '
                      'hint f32, denormals as zero',
                      int8_calibration=f'{s.calib} random-noise image(s) through '
                      "the config's normalisation (enough for latency, not for "
                      'accuracy); ort-int8: quantize_model (QDQ, int8 weights per '
                      'channel, uint8 activations, MinMax, post-processing float); '
                      'et-int8: PT2E, XNNPACKQuantizer (int8 per-channel weights, int8 '
                      'activations); ov-int8: NNCF quantize_openvino',
                      memory_measure='a fresh process per (model, backend, threads): '
                      'peak RSS (VmHWM; ru_maxrss carries the parent\'s peak over fork '
                      'and exec) of opening the file (eager: building the model) and '
                      'running it twice on zeros; runtime = RSS after importing the '
                      'runtime (for files: mobilenet_tasks.backends, which imports '
                      'torch); model = peak - runtime. MiB',
                      weights='random (the configs\' initialisation)',
                      denormals_flushed=bool(flush)),
        what_is_timed=WHAT_IS_TIMED,
        models=list(models.values()),
        ratios=ratios,
        seconds=round(time.perf_counter() - started, 1))


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
