"""Runtimes that run exported model files: one interface (:class:`Backend`), one table
(:data:`RUNTIMES`: name, file suffixes, class), one model class doing the task
post-processing for any of them (:class:`BackendModel`).

This package sits below :mod:`mobilenet_tasks.apis` (the Inferencer runs exported
files) and imports nothing above :mod:`mobilenet_tasks.utils`; exporting and quantizing
(:mod:`mobilenet_tasks.deployment`) sit above both.

The names below load on first access (PEP 562): opening a file with
:func:`open_backend` imports numpy and the file's runtime only, not torch and mmengine
(which :class:`BackendModel` needs), so that a process running an ONNX or OpenVINO
file holds only what that runtime needs (the benchmark measures its memory).
"""
from mobilenet_tasks.utils.lazy import lazy_attributes

_LAZY = {name: '.base' for name in (
    'PYTORCH', 'RUNTIMES', 'Backend', 'BackendError', 'RuntimeMissingError',
    'backend_names', 'choose_backend', 'open_backend', 'read_metadata', 'runtime_for')}
_LAZY.update({name: '.model' for name in (
    'BackendModel', 'ONNXRuntimeModel', 'backend_model_config')})

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = list(_LAZY)
