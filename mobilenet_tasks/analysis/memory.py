"""Peak memory of a model on a runtime, measured in a fresh process, and the size of its
file on disk.

Each measurement starts a new interpreter (``python -m mobilenet_tasks.analysis.memory
...``), so that nothing the benchmark itself holds (other models, other runtimes, the
exporters) counts. The child

1. imports the runtime (for a model file: :mod:`mobilenet_tasks.backends`, which
   imports torch and mmengine for its ``BackendModel``, the runtime's packages,
   :data:`RUNTIME_IMPORTS`, and the project's backend class, and loads what the runtime
   loads once a process (ExecuTorch's runtime, OpenVINO's CPU plugin); for PyTorch:
   torch, the config, the model's library and registry) and records its resident set
   then (``runtime_mb``: ``VmRSS`` of ``/proc/self/status``, else the peak so far);
2. opens the file with :func:`mobilenet_tasks.backends.open_backend` on ``threads``
   threads (PyTorch: builds the config's model with random, initialised weights, on
   ``torch.set_num_threads(threads)``) and runs it twice on a zeros input of the file's
   input shape (PyTorch: of ``--size``), denormals flushed as in the benchmark;
3. prints JSON: ``peak_mb`` (the process's peak resident set: ``VmHWM`` of
   ``/proc/self/status``, which starts with the new program; ``resource.getrusage(
   RUSAGE_SELF).ru_maxrss`` where there is no ``/proc``, and as ``ru_maxrss_mb``: on
   Linux it keeps the parent's peak across ``fork`` and ``exec``, so in a child of the
   benchmark it is the benchmark's), ``runtime_mb`` and ``model_mb`` = ``peak_mb -
   runtime_mb``: what the model itself adds (weights, the runtime's plan and its
   activation memory, its threads' buffers, and first-run initialisation of the
   runtime's kernels, which a process pays once for any model).

MB here are MiB (2**20 bytes). ``file_mb`` (:func:`file_mb`) is the model file's size
(an OpenVINO IR: ``.xml`` and ``.bin``).

    python -m mobilenet_tasks.analysis.memory model.onnx --threads 1
    python -m mobilenet_tasks.analysis.memory model.onnx --backend openvino
    python -m mobilenet_tasks.analysis.memory configs/lraspp_v3_large_cityscapes.py \\
        --backend pytorch --size 512 1024 --cfg-options '{"model.pretrained": null}'

This module imports nothing heavy at the top: the child imports only what it measures.
"""
import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

PYTORCH = 'pytorch'
TORCHVISION_PREFIX = 'torchvision:'
MB = float(1 << 20)

# runtime (a mobilenet_tasks.backends.RUNTIMES name) -> the packages its backend
# imports to open and run a file, imported before the baseline is read
RUNTIME_IMPORTS = {
    'onnxruntime': ('numpy', 'onnxruntime', 'onnx'),
    'executorch': ('numpy', 'torch', 'executorch.runtime',
                   'executorch.extension.pybindings.portable_lib'),
    'openvino': ('numpy', 'openvino', 'onnx'),
}
_KEEP = []  # what the runtime set-up made, alive until the child exits


def _setup_runtime(name: str) -> None:
    """Load what a runtime loads once a process whatever the model (ExecuTorch's
    runtime singleton, OpenVINO's CPU plugin), so the baseline holds it."""
    if name == 'executorch':
        from executorch.runtime import Runtime
        _KEEP.append(Runtime.get())
    elif name == 'openvino':
        import openvino
        core = openvino.Core()
        core.get_property('CPU', 'FULL_DEVICE_NAME')  # loads the CPU plugin
        _KEEP.append(core)


class MeasureError(RuntimeError):
    """The child process failed (its error is the message)."""


def file_mb(path) -> float:
    """The size of a model file in MiB: an OpenVINO IR's ``.xml`` with its ``.bin``."""
    return round(file_bytes(path) / MB, 3)


def file_bytes(path) -> int:
    """The size of a model file in bytes (an IR: ``.xml`` + ``.bin``)."""
    path = Path(path)
    size = os.path.getsize(path)
    if path.suffix.lower() == '.xml' and path.with_suffix('.bin').is_file():
        size += os.path.getsize(path.with_suffix('.bin'))
    return size


def _status_mb(key: str) -> Optional[float]:
    """A ``kB`` line of ``/proc/self/status`` in MiB (None where there is none)."""
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return None


def _rss_mb() -> float:
    """The resident set now (VmRSS), else the peak so far."""
    now = _status_mb('VmRSS')
    return _peak_mb() if now is None else now


def _maxrss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (MB if sys.platform == 'darwin' else 1024.0)  # bytes on macOS


def _peak_mb() -> float:
    """This address space's peak resident set: ``VmHWM``, else ``ru_maxrss``.

    ``ru_maxrss`` alone would be wrong in a child: Linux carries the parent's peak
    over ``fork`` and ``exec`` (a child of a 2 GB benchmark reports at least 2 GB),
    while ``VmHWM`` starts again with the new program's address space."""
    peak = _status_mb('VmHWM')
    return _maxrss_mb() if peak is None else peak


# -- the child ------------------------------------------------------------------------
def _measure_file(path: str, runtime: Optional[str], threads: Optional[int],
                  options: dict, size: Optional[Sequence[int]]) -> dict:
    from mobilenet_tasks.backends.base import _backend_class, runtime_for
    name = runtime or runtime_for(path)
    for module in RUNTIME_IMPORTS.get(name, ()):
        importlib.import_module(module)
    _backend_class(name)  # the project's backend module
    _setup_runtime(name)
    import numpy as np
    baseline = _rss_mb()
    from mobilenet_tasks.backends import open_backend
    backend = open_backend(path, backend=runtime, threads=threads, **options)
    shape = [v if isinstance(v, int) else None for v in backend.input_shape]
    if None in shape:  # a dynamic graph: the size asked for
        if not size or len(shape) != 4:
            raise ValueError(f'{path} has a dynamic input {backend.input_shape}: pass '
                             '--size H W')
        shape = [shape[0] or 1, shape[1] or 3, *size]
    x = np.zeros(shape, dtype=np.float32)
    feed = {backend.input_names[0]: x}
    for _ in range(2):
        backend.run(feed)
    return dict(runtime=backend.name, input_shape=shape, runtime_mb=baseline,
                file_mb=file_mb(path), file_bytes=file_bytes(path))


def _measure_pytorch(config: str, cfg_options: dict, threads: Optional[int],
                     size: Sequence[int]) -> dict:
    import torch
    from mobilenet_tasks.analysis.build import build
    from mobilenet_tasks.analysis.catalogue import Entry
    if config.startswith(TORCHVISION_PREFIX):
        import torchvision.models.detection  # noqa: F401
        entry = Entry(name=config, short='', source='torchvision', task='detection')
    else:
        from mobilenet_tasks.utils.config import load_config
        from mobilenet_tasks.utils.task import task_of_config
        cfg = load_config(config, cfg_options or None)
        task = task_of_config(cfg, config)  # imports the model's library and registry
        entry = Entry(name=config, short='', source='config', task=task, config=config,
                      cfg_options=dict(cfg_options or {}))
    if threads:
        torch.set_num_threads(int(threads))
    torch.set_flush_denormal(True)
    baseline = _rss_mb()
    from mobilenet_tasks.analysis.build import quiet_mmengine
    with quiet_mmengine():
        timed = build(entry).timed
    x = torch.zeros(1, 3, *size)
    with torch.inference_mode():
        for _ in range(2):
            timed(x)
    return dict(runtime=PYTORCH, input_shape=[1, 3, *size], runtime_mb=baseline,
                file_mb=None, file_bytes=None)


def child_main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description='Peak resident memory of a model file opened by a runtime and run '
        'twice on zeros (or of a config\'s PyTorch model), in this fresh process; '
        'prints JSON')
    parser.add_argument('file', help="a model file, or with --backend pytorch a config "
                        "file or 'torchvision:ssdlite320_mobilenet_v3_large'")
    parser.add_argument('--backend', help="a runtime name (default: the file's), or "
                        "'pytorch'")
    parser.add_argument('--threads', type=int, help='threads (default: the runtime\'s)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (pytorch; dynamic graphs)')
    parser.add_argument('--options', default='{}',
                        help='JSON: open_backend options (runtimes)')
    parser.add_argument('--cfg-options', default='{}',
                        help='JSON: config overrides (pytorch)')
    args = parser.parse_args(argv)
    if args.backend == PYTORCH:
        if not args.size:
            parser.error('--backend pytorch needs --size H W')
        out = _measure_pytorch(args.file, json.loads(args.cfg_options), args.threads,
                               args.size)
    else:
        out = _measure_file(args.file, args.backend, args.threads,
                            json.loads(args.options), args.size)
    peak = _peak_mb()
    out.update(peak_mb=round(peak, 1), runtime_mb=round(out['runtime_mb'], 1),
               model_mb=round(peak - out['runtime_mb'], 1), threads=args.threads,
               ru_maxrss_mb=round(_maxrss_mb(), 1))
    print(json.dumps(out))
    return 0


# -- the parent -----------------------------------------------------------------------
def _run_child(args: Sequence[str], timeout: float) -> dict:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(root)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    cmd = [sys.executable, '-m', 'mobilenet_tasks.analysis.memory', *map(str, args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired as e:
        raise MeasureError(f'no answer in {timeout:.0f} s') from e
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ['no output'])[-1]
        raise MeasureError(f'exit status {proc.returncode}: {tail[-300:]}')
    return json.loads(lines[-1])


def measure_file(path, runtime: Optional[str] = None, threads: Optional[int] = None,
                 options: Optional[dict] = None, timeout: float = 600) -> dict:
    """Peak memory of ``path`` opened by ``runtime`` (default: the one its suffix
    names) on ``threads`` threads and run twice, in a fresh process: a dict with
    ``peak_mb``, ``runtime_mb``, ``model_mb``, ``file_mb``, ``file_bytes``,
    ``input_shape``, ``runtime``, ``threads``.

    Raises:
        MeasureError: The child failed or timed out (its last error line).
    """
    args = [os.fspath(path), '--options', json.dumps(options or {})]
    if runtime:
        args += ['--backend', runtime]
    if threads:
        args += ['--threads', int(threads)]
    return _run_child(args, timeout)


def measure_pytorch(config: str, size: Sequence[int], cfg_options: Optional[dict] = None,
                    threads: Optional[int] = None, timeout: float = 600) -> dict:
    """As :func:`measure_file`, for the PyTorch model ``config`` builds (random
    weights, ``cfg_options`` applied; ``'torchvision:...'``: torchvision's SSDLite, its
    ``head(backbone(x))``), run twice on a zeros ``1 x 3 x size`` input."""
    args = [config, '--backend', PYTORCH, '--size', *size,
            '--cfg-options', json.dumps(cfg_options or {})]
    if threads:
        args += ['--threads', int(threads)]
    return _run_child(args, timeout)


if __name__ == '__main__':
    sys.exit(child_main())
