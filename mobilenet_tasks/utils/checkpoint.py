"""Loading mmengine checkpoints on torch >= 2.6 without turning off ``weights_only``.

torch 2.6 made ``torch.load(weights_only=True)`` the default; mmengine 0.10.7 checkpoints
pickle message-hub objects (``HistoryBuffer``, numpy arrays and scalars) in their
``message_hub`` and ``meta``, so ``tools/test.py`` and ``--resume`` fail with
``UnpicklingError: Weights only load failed`` (mmengine issue #1655, PR #1650, not
released). Instead of loading with ``weights_only=False`` (which lets any checkpoint run
code), we allow-list just the classes those checkpoints hold; every other global is still
refused.
"""
import pickle

import numpy as np
import torch

_REGISTERED = False

# The statistics a HistoryBuffer pickles as ``getattr(HistoryBuffer, name)``.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'mean', 'current')


def _history_buffer_getattr(obj, name):
    """A ``getattr`` that resolves only HistoryBuffer's statistic methods.

    mmengine's HistoryBuffer pickles its ``statistics_methods`` as
    ``builtins.getattr(HistoryBuffer, 'min')`` and so on. Allow-listing the real
    ``getattr`` would let a crafted checkpoint walk from any allowed object to arbitrary
    code (``__init__.__globals__`` ...); this stand-in answers only those names.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint: only '
        f'HistoryBuffer statistics {_HISTORY_BUFFER_STATISTICS} are allowed')


def mmengine_checkpoint_globals():
    """The globals an mmengine 0.10.7 training checkpoint pickles, beyond tensors."""
    from mmengine.logging.history_buffer import HistoryBuffer

    allowed = [
        HistoryBuffer,
        np.ndarray,
        np.dtype,
        np.core.multiarray._reconstruct if hasattr(np, 'core') else None,
        np.core.multiarray.scalar if hasattr(np, 'core') else None,
    ]
    # numpy >= 2 pickles arrays through numpy._core and dtypes as numpy.dtypes.*DType.
    try:
        from numpy._core import multiarray as core_multiarray
        allowed += [core_multiarray._reconstruct, core_multiarray.scalar]
    except ImportError:  # numpy < 2
        pass
    allowed += [type(np.dtype(name)) for name in (
        'float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8',
        'bool')]
    allowed = [g for g in allowed if g is not None]
    # pickle protocol 2 names it __builtin__.getattr; torch maps it to builtins.getattr
    allowed += [(_history_buffer_getattr, 'builtins.getattr'),
                (_history_buffer_getattr, '__builtin__.getattr')]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Allow-list the classes of mmengine checkpoints for ``weights_only`` loading.

    Idempotent; a no-op on torch without ``add_safe_globals`` (< 2.4).
    """
    global _REGISTERED
    if _REGISTERED or not hasattr(torch.serialization, 'add_safe_globals'):
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _REGISTERED = True
