"""The backend interface: an exported model file, opened with a thread count, run on
arrays.

A runtime is one :class:`Backend` subclass in one module, and one row of
:data:`RUNTIMES` (its name, the file suffixes it opens, where its class lives). Every
caller picks a runtime through :func:`runtime_for` / :func:`open_backend`, never by
testing suffixes or importing a runtime itself: the inferencer and ``tools/test.py``
(through :class:`~mobilenet_tasks.backends.model.BackendModel`), export parity checks,
quantization and the benchmark. Adding a runtime: a module here, a row below.
"""
import importlib
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

PYTORCH = 'pytorch'  # not a file runtime: a checkpoint loaded into the config's model

# name -> (file suffixes it is chosen for, 'module:Class' of its Backend). A runtime
# can open other suffixes too when it is asked for by name (OpenVINO runs ``.onnx``
# files): its class's ``also_opens``.
RUNTIMES: Dict[str, Tuple[Tuple[str, ...], str]] = {
    'onnxruntime': (('.onnx', ), 'mobilenet_tasks.backends.onnxruntime:ONNXRuntime'),
    'executorch': (('.pte', ), 'mobilenet_tasks.backends.executorch:ExecuTorch'),
    'openvino': (('.xml', ), 'mobilenet_tasks.backends.openvino:OpenVINO'),
}


def decode_metadata(strings: Dict[str, str]) -> dict:
    """An exported file's metadata strings, each JSON-decoded where it is JSON (the
    exporters write ``input_size``, ``class_names``... as JSON, ``task`` as plain
    text): the one reading of every runtime's container."""
    import json
    out = {}
    for key, value in strings.items():
        try:
            out[key] = json.loads(value)
        except (TypeError, ValueError):
            out[key] = value
    return out


class BackendError(ValueError):
    """A model file no runtime opens, or a runtime asked to open the wrong file."""


class RuntimeMissingError(BackendError, ImportError):
    """The runtime's Python package is not installed."""


def require(module: str, runtime: str, package: str):
    """``import module``, or :class:`RuntimeMissingError` saying which package of
    ``requirements/optional.txt`` to install for ``runtime``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeMissingError(
            f'{runtime} is not installed here ({e}): pip install -c '
            f'requirements/constraints.txt {package} (requirements/optional.txt; '
            '`make setup` installs it)') from e


class Backend:
    """An exported model opened by a runtime, on the CPU.

    Args:
        path (str): The model file.
        threads (int, optional): Intra-op threads (one inter-op thread); None: the
            runtime's default (all cores).
        **options: Runtime-specific options (documented by each subclass).

    Attributes:
        path (str): The file.
        metadata (dict): What the exporter stored (``task``, ``config``,
            ``input_size``, ``mean``, ``std``, ``class_names``...; see
            :mod:`mobilenet_tasks.deployment.onnx_export`).
        input_names (list[str]): The graph's inputs, in order.
        input_shape (tuple): The first input's shape: ints, None where dynamic.
        output_names (list[str]): The graph's outputs, in order.
    """

    name = ''
    export_hint = ''  # how to make such a file, for error messages
    also_opens: Tuple[str, ...] = ()  # suffixes opened when asked for by name

    def __init__(self, path, threads: Optional[int] = None, **options):
        self.path = os.fspath(path)
        self.threads = threads
        self.metadata: dict = {}
        self.input_names: List[str] = []
        self.input_shape: Tuple = ()
        self.output_names: List[str] = []

    def run(self, inputs: Union[np.ndarray, Dict[str, np.ndarray]],
            outputs: Optional[Sequence[str]] = None) -> List[np.ndarray]:
        """Run the graph: one array for its only input, or arrays by input name.

        Returns:
            list[np.ndarray]: ``outputs`` (default: every output), in order.
        """
        raise NotImplementedError

    def _feed(self, inputs) -> Dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            return inputs
        if len(self.input_names) != 1:
            raise ValueError(f'{self.path} has inputs {self.input_names}: pass a dict '
                             'of arrays by input name')
        return {self.input_names[0]: inputs}

    @property
    def fixed_batch(self) -> Optional[int]:
        """The batch size the graph was exported for, None if dynamic."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) else None

    @property
    def fixed_size(self) -> Optional[Tuple[int, int]]:
        """``(H, W)`` the graph was exported for, None if dynamic."""
        size = tuple(self.input_shape[2:])
        return size if size and all(isinstance(v, int) for v in size) else None

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.path!r}, threads={self.threads})'


def runtime_for(path) -> Optional[str]:
    """The runtime that opens ``path`` (by its suffix), None for a checkpoint (or
    anything no runtime opens)."""
    if not isinstance(path, (str, os.PathLike)):
        return None
    lower = os.fspath(path).lower()
    for name, (suffixes, _) in RUNTIMES.items():
        if lower.endswith(suffixes):
            return name
    return None


def backend_names() -> Tuple[str, ...]:
    """``'pytorch'`` and every runtime's name."""
    return (PYTORCH, ) + tuple(RUNTIMES)


def choose_backend(backend: Optional[str], weights, device: str = 'cpu') -> str:
    """The backend to run ``weights`` with: ``backend`` checked against the file, or
    the one its suffix names (``'pytorch'`` for a checkpoint or no weights).

    Raises:
        BackendError: An unknown backend, a runtime given a checkpoint, PyTorch given
            an exported file, or a runtime asked for a GPU.
    """
    found = runtime_for(weights)
    if backend is None:
        backend = found or PYTORCH
    if backend not in backend_names():
        raise BackendError(f'backend must be one of {backend_names()}, got {backend!r}')
    if backend == PYTORCH and found:
        raise BackendError(f"{weights} is a model file of {found}: use backend="
                           f"'{found}' (or leave backend unset)")
    if backend != PYTORCH and found != backend and not _also_opens(backend, weights):
        suffixes = ' / '.join(RUNTIMES[backend][0] + _backend_class(backend).also_opens)
        raise BackendError(f"backend={backend!r} runs an exported {suffixes} file, got "
                           f'weights={weights!r}: {_backend_class(backend).export_hint} '
                           'and pass it as weights')
    if backend != PYTORCH and str(device) != 'cpu':
        raise BackendError(f'backend={backend!r} runs on the CPU here, got device '
                           f'{device!r}')
    return backend


def _also_opens(backend: str, weights) -> bool:
    """Whether ``backend`` opens ``weights`` though its suffix names another runtime
    (OpenVINO and ``.onnx``)."""
    if not isinstance(weights, (str, os.PathLike)):
        return False
    return os.fspath(weights).lower().endswith(_backend_class(backend).also_opens or
                                               ('\0', ))


def _backend_class(name: str) -> type:
    module, cls = RUNTIMES[name][1].split(':')
    return getattr(importlib.import_module(module), cls)


def open_backend(path, backend: Optional[str] = None, threads: Optional[int] = None,
                 **options) -> Backend:
    """Open a model file with ``backend`` (default: the runtime its suffix names).

    Raises:
        FileNotFoundError: No such file.
        BackendError: No runtime opens it, or an unknown ``backend``.
    """
    path = os.fspath(path)
    name = backend or runtime_for(path)
    if name is None:
        known = ', '.join(f'{n} ({" ".join(s)})' for n, (s, _) in RUNTIMES.items())
        raise BackendError(f'{path}: no runtime opens this kind of file; known: {known}')
    if name not in RUNTIMES:
        raise BackendError(f'unknown runtime {name!r}; one of {tuple(RUNTIMES)}')
    cls = _backend_class(name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{cls.name} file {path} does not exist; '
                                f'{cls.export_hint}')
    return cls(path, threads=threads, **options)


def read_metadata(path, backend: Optional[str] = None) -> dict:
    """The metadata an exported file holds (without opening a session where the
    runtime allows it)."""
    name = backend or runtime_for(path)
    if name is None or name not in RUNTIMES:
        raise BackendError(f'{path}: no runtime opens this kind of file')
    cls = _backend_class(name)
    reader = getattr(cls, 'read_metadata', None)
    return reader(path) if reader else cls(path).metadata
