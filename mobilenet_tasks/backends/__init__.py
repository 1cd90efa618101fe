"""Runtimes that run exported model files: one interface (:class:`Backend`), one table
(:data:`RUNTIMES`: name, file suffixes, class), one model class doing the task
post-processing for any of them (:class:`BackendModel`).

This package sits below :mod:`mobilenet_tasks.apis` (the Inferencer runs exported
files) and imports nothing above :mod:`mobilenet_tasks.utils`; exporting and quantizing
(:mod:`mobilenet_tasks.deployment`) sit above both.
"""
from .base import (PYTORCH, RUNTIMES, Backend, BackendError, backend_names,
                   choose_backend, open_backend, read_metadata, runtime_for)
from .model import BackendModel, ONNXRuntimeModel, backend_model_config

__all__ = ['PYTORCH', 'RUNTIMES', 'Backend', 'BackendError', 'backend_names',
           'choose_backend', 'open_backend', 'read_metadata', 'runtime_for',
           'BackendModel', 'ONNXRuntimeModel', 'backend_model_config']
