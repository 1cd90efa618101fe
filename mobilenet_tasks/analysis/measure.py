"""Measuring the models of one task: their backends made ready (the PyTorch modules,
the model files of :data:`.runtimes.FILE_BACKENDS`), timed interleaved at each thread
count, int8 outputs compared with fp32 ones, then the peak memory of each (model,
backend) in a fresh process (:mod:`.memory`).

A backend whose file cannot be made, opened or run goes into the model's ``skipped``
with the reason; the others are measured."""
import gc
import statistics
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from .build import calibration_images, fidelity, fold_bn
from .catalogue import BACKENDS, RATIOS, TORCH_BACKENDS
from .memory import MeasureError, file_mb, measure_file, measure_pytorch
from .runtimes import FILE_BACKENDS, ModelFiles, Unavailable, _reason, open_file_backend
from .timing import Runner, backend_runner, time_runners, torch_runner


def ratio_sides(quick_only: bool = False) -> set:
    """The (model, backend) pairs the ratio rows use (``quick_only``: the rows
    ``--quick`` times)."""
    return {side for spec in RATIOS for side in (spec['num'], spec['den'])
            if not quick_only or spec.get('quick', True)}


def backends_for(entry, s) -> List[str]:
    """The backends ``s`` (:class:`~.benchmark.Settings`) measures for ``entry``, in
    :data:`BACKENDS` order."""
    backends = s.backends if entry.source == 'ours' else s.peer_backends
    if s.ratio_runners_only and entry.name not in s.all_runtimes_for:
        needed = ratio_sides(quick_only=True)
        backends = [b for b in backends if b == 'eager' or (entry.name, b) in needed]
    return [b for b in BACKENDS if b in backends]


def memory_threads(s, threads: Sequence[int]) -> List[int]:
    """The thread counts memory is measured at: the least one timed (a fresh process a
    model, backend and thread count costs seconds each; what more threads add, their
    stacks and scratch buffers, is small beside the model), none with ``s.memory``
    off."""
    if not s.memory:
        return []
    return list(threads[:1])


def _skip(record: dict, backend: str, reason: str, log) -> None:
    record['skipped'][backend] = reason
    log(f'{record["name"]} {backend}: skipped ({reason})')


def measure_task(entries, built, models, size, threads: Sequence[int], s,
                 work_dir: Path) -> None:
    """Prepare the backends of one task's models, then time them interleaved, for each
    thread count; then their memory (``s.memory``)."""
    log = s.log
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *size, generator=gen)
    array = x.numpy()
    images: List[str] = []

    def calibration() -> List[str]:
        if not images:
            images.extend(calibration_images(work_dir / 'calibration', size, s.calib))
        return images

    modules, files = {}, {}
    for entry in entries:
        record = models[entry.name]
        timed = built[entry.name].timed
        made = ModelFiles(built[entry.name], size, work_dir, calibration, log,
                          reuse=s.reuse_files)
        for backend in backends_for(entry, s):
            if backend == 'eager':
                modules[entry.name, backend] = timed
            elif backend == 'fused':
                try:
                    fused, report = fold_bn(timed)
                except Exception as e:  # noqa: BLE001 - recorded
                    _skip(record, backend, _reason(e), log)
                    continue
                record['bn_folded'] = report.num_folded
                record['bn_left'] = dict(report.left)
                modules[entry.name, backend] = fused
            else:
                try:
                    summary = made.make(backend)
                except Unavailable as e:
                    _skip(record, backend, str(e), log)
                    continue
                files[entry.name, backend] = summary['path']
                record['exports'][backend] = summary
                record['file_mb'][backend] = file_mb(summary['path'])

    order = {e.name: i for i, e in enumerate(entries)}
    for n in threads:
        torch.set_num_threads(n)
        runners = [torch_runner(name, backend, module, x)
                   for (name, backend), module in modules.items()]
        # opened right before this thread count is timed: ExecuTorch's threadpool is
        # process-wide, every program opened resets it to n
        sessions = {}
        for (name, backend), path in files.items():
            if backend in models[name]['skipped']:
                continue
            try:
                sessions[name, backend] = open_file_backend(backend, path, n)
            except Exception as e:  # noqa: BLE001 - recorded
                _skip(models[name], backend, f'opening it on {n} thread(s): '
                      f'{_reason(e)}', log)
        log(f'{len(sessions)} runtime sessions ready')
        runners += [backend_runner(name, backend, session, array)
                    for (name, backend), session in sessions.items()]
        runners = _working(runners, models, n, log)
        runners.sort(key=lambda r: (order[r.name], BACKENDS.index(r.backend)))
        if n == threads[0]:
            _fidelities(entries, models, sessions, array)
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
    if s.memory:
        measure_memory(entries, models, files, size, memory_threads(s, threads), log)


def _working(runners: List[Runner], models, n: int, log) -> List[Runner]:
    """The runners that run once without an error (the others are skipped)."""
    out = []
    for runner in runners:
        try:
            runner.run()
        except Exception as e:  # noqa: BLE001 - recorded
            _skip(models[runner.name], runner.backend,
                  f'running it on {n} thread(s): {_reason(e)}', log)
            continue
        out.append(runner)
    return out


def _fidelities(entries, models, sessions, array) -> None:
    """Each int8 backend's outputs against its fp32 backend's, on the benchmark's
    input."""
    for entry in entries:
        for backend, spec in FILE_BACKENDS.items():
            k8, k32 = (entry.name, backend), (entry.name, spec.int8_of)
            if spec.int8_of and k8 in sessions and k32 in sessions:
                try:
                    models[entry.name]['int8_fidelity'][backend] = fidelity(
                        sessions[k32].run(array), sessions[k8].run(array), entry.task)
                except Exception as e:  # noqa: BLE001 - a comparison, not a measure
                    models[entry.name]['int8_fidelity'][backend] = dict(
                        error=_reason(e))


def memory_source(entry) -> str:
    """What :func:`.memory.measure_pytorch` builds ``entry``'s model from."""
    return entry.config or entry.name


def measure_memory(entries, models: Dict[str, dict], files: dict, size,
                   threads: Sequence[int], log) -> None:
    """The peak memory of every (model, backend) timed, eager and the file backends,
    each in a fresh process (:mod:`.memory`), at each of ``threads``."""
    for entry in entries:
        record = models[entry.name]
        for backend in [b for b in BACKENDS if b in record['latency_ms']]:
            if backend in TORCH_BACKENDS and backend != 'eager':
                continue  # BN folded: the eager model's memory, less the BNs
            log(f'memory of {entry.name} {backend}')
            for n in threads:
                try:
                    if backend == 'eager':
                        got = measure_pytorch(memory_source(entry), size,
                                              entry.cfg_options, n)
                    else:
                        spec = FILE_BACKENDS[backend]
                        got = measure_file(files[entry.name, backend], spec.runtime, n,
                                           spec.options)
                except (MeasureError, OSError, ValueError) as e:
                    record['memory_skipped'][backend] = _reason(e)
                    log(f'{entry.name} {backend}: no memory figure ({e})')
                    break
                record['memory_mb'].setdefault(backend, {})[str(n)] = dict(
                    peak=got['peak_mb'], runtime=got['runtime_mb'],
                    model=got['model_mb'])
