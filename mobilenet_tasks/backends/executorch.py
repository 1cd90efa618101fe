"""ExecuTorch (the ``.pte`` programs :mod:`mobilenet_tasks.deployment.executorch_export`
writes, delegated to XNNPACK) behind the :class:`~.base.Backend` interface, run by
ExecuTorch's Python runtime (``executorch.runtime.Runtime``) on the CPU.

Metadata: the exporter stores the same string keys an ONNX file holds in its
``metadata_props`` (:mod:`mobilenet_tasks.deployment.onnx_export`) as one JSON string,
returned by the program's constant method ``mobilenet_tasks_metadata``; it is read
without loading the ``forward`` method.

Threads: XNNPACK runs on ExecuTorch's one process-wide threadpool. Opening a file with
``threads=n`` resets that pool to ``n`` threads (for every open program); ``None``
leaves it as it is (the default: one thread a core).
"""
import contextlib
import json
import os
from typing import Optional

import numpy as np

from .base import Backend, decode_metadata, require

METADATA_METHOD = 'mobilenet_tasks_metadata'


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what the runtime's C++ code prints to file descriptor 2 while a program
    loads (cpuinfo's probing of ARM-only files, the threadpool's resets): lines that
    say nothing about the model. Python errors are raised, not printed, so none are
    lost."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr
        yield
        return
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _runtime():
    require('executorch', 'ExecuTorch', 'executorch')
    from executorch.runtime import Runtime
    with _quiet_native_stderr():
        return Runtime.get()


def set_threads(threads: int) -> None:
    """Resize ExecuTorch's process-wide threadpool (XNNPACK's threads) to ``threads``."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    with _quiet_native_stderr():
        _unsafe_reset_threadpool(int(threads))


def _program_metadata(program, path) -> dict:
    if METADATA_METHOD not in program.method_names:
        return {}
    method = program.load_method(METADATA_METHOD)
    (text, ) = method.execute([])
    if not isinstance(text, str):
        raise ValueError(f'{path}: its {METADATA_METHOD} method returns '
                         f'{type(text).__name__}, not the exporter\'s JSON string')
    return decode_metadata(json.loads(text))


def read_pte_metadata(path) -> dict:
    """The metadata of a ``.pte`` file (its ``forward`` is not loaded)."""
    with _quiet_native_stderr():
        program = _runtime().load_program(os.fspath(path))
        return _program_metadata(program, path)


class ExecuTorch(Backend):
    """A ``.pte`` program, its ``forward`` method run by ExecuTorch's runtime.

    Its input and output shapes are those it was exported for (ExecuTorch programs
    here are static); the output names come from the metadata (``output_names``),
    else ``output_<i>``.
    """

    name = 'executorch'
    export_hint = 'export one with tools/deployment/export_executorch.py'
    read_metadata = staticmethod(read_pte_metadata)

    def __init__(self, path, threads: Optional[int] = None):
        super().__init__(path, threads)
        runtime = _runtime()
        if threads:
            set_threads(threads)
        with _quiet_native_stderr():
            program = runtime.load_program(self.path)
            if 'forward' not in program.method_names:
                raise ValueError(f'{self.path}: the program has no forward method '
                                 f'(it has {sorted(program.method_names)}); '
                                 f'{self.export_hint}')
            self.metadata = _program_metadata(program, self.path)
            self.method = program.load_method('forward')
        self._program = program  # the method needs its program alive
        meta = program.metadata('forward')
        self.input_names = list(self.metadata.get('input_names') or
                                [f'input_{i}' for i in range(meta.num_inputs)])
        if self.input_names == ['input_0']:
            self.input_names = ['input']
        self.input_shape = tuple(int(v) for v in meta.input_tensor_meta(0).sizes())
        self.output_names = list(self.metadata.get('output_names') or
                                 [f'output_{i}' for i in range(meta.num_outputs)])

    def run(self, inputs, outputs=None):
        import torch
        feed = self._feed(inputs)
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise ValueError(f'{self.path}: no array for input(s) {missing}')
        tensors = []
        for name in self.input_names:
            array = np.ascontiguousarray(feed[name], dtype=np.float32)
            if tuple(array.shape) != self.input_shape:
                raise ValueError(f'{self.path} was exported for inputs of shape '
                                 f'{self.input_shape}, got {tuple(array.shape)}: export '
                                 'it again at this size')
            tensors.append(torch.from_numpy(array))
        got = self.method.execute(tensors)
        # copies: the outputs live in the program's planned memory, which the next
        # run overwrites
        by_name = dict(zip(self.output_names, got))
        return [by_name[n].numpy().copy() for n in (outputs or self.output_names)]
