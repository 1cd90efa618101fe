"""Loading weights into a model: one loader for every tool and API.

:func:`load_weights` reads a checkpoint file (``weights_only``: a file that pickles
code is refused; mmengine's own classes are allow-listed, :mod:`.checkpoint`):
mmengine's (``tools/train.py``), a converter's ``{'state_dict', 'meta'}``, a plain
state dict, or a reference training script's ``{'model': state_dict}``; or any address
mmengine's ``CheckpointLoader`` reads (``mobilenet_tasks://torchvision/...``, a pretrained
start downloaded, converted and cached by :mod:`mobilenet_tasks.converters.pretrained`;
``https://...``).
:func:`check_state_dict` says, before anything is loaded, what does not fit and which
config to use instead; :func:`load_into` does both and loads strictly. Library code
raises ``ValueError`` / ``FileNotFoundError``; the command-line tools turn them into
``error: ...`` exits.
"""
import os
import re
from typing import List, Optional, Tuple

import torch

from .checkpoint import allow_mmengine_checkpoints
from .model_index import ROOT

#: The state dict key that marks a QAT checkpoint (QATModel's iteration count).
QAT_ITER_KEY = 'qat_iter'

_MAX_KEYS_SHOWN = 3  # keys named per kind of checkpoint mismatch
STATE_DICT_KEYS = ('state_dict', 'model')  # where a checkpoint may hold its state dict


def load_weights(path) -> Tuple[dict, dict]:
    """``(state_dict, meta)`` of a checkpoint file or address (``weights_only``
    loading; a DataParallel ``module.`` prefix removed).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a checkpoint, or one holding no state dict of tensors; an
            address that cannot be resolved or downloaded.
    """
    path = os.fspath(path)
    allow_mmengine_checkpoints()
    if '://' in path:
        ckpt = _load_address(path)
    elif not os.path.isfile(path):
        raise FileNotFoundError(f'weights {path}: no such file')
    else:
        try:
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:  # noqa: BLE001 (any unpickling error)
            raise ValueError(f'weights {path}: cannot load it as a checkpoint '
                             f'({_first_line(e)})') from e
    meta = {}
    if isinstance(ckpt, dict):
        for key in STATE_DICT_KEYS:
            if isinstance(ckpt.get(key), dict):
                meta = ckpt.get('meta') or {}
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, dict) or not ckpt or not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f'weights {path}: holds no state dict of tensors (a checkpoint '
                         "is a state dict, or a dict with one under 'state_dict' or 'model')")
    if all(k.startswith('module.') for k in ckpt):
        ckpt = {k[len('module.'):]: v for k, v in ckpt.items()}
    return ckpt, meta if isinstance(meta, dict) else {}


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_address(path: str):
    """Load ``scheme://...`` through mmengine's ``CheckpointLoader``, our schemes
    registered (:func:`mobilenet_tasks.registry.import_checkpoint_schemes`)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from mobilenet_tasks.registry import import_checkpoint_schemes
    import_checkpoint_schemes()
    try:
        return CheckpointLoader.load_checkpoint(path, map_location='cpu',
                                                logger='silent')
    except ValueError:  # a bad address: its own message says what to write
        raise
    except Exception as e:  # noqa: BLE001 (a failed download, a bad file)
        raise ValueError(f'weights {path}: cannot load it ({_first_line(e)})') from e


def check_state_dict(model: torch.nn.Module, state_dict: dict, meta: dict, weights,
                     config) -> None:
    """Raise a ValueError naming what differs if ``state_dict`` does not load strictly
    into ``model``, with the config to use where the checkpoint says."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state_dict
               and not k.endswith('num_batches_tracked')]  # BN fills those in
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [k for k in expected
              if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} keys of the model missing from it '
                     f'({_first(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} keys the model does not have '
                     f'({_first(unexpected)})')
    if shapes:
        shown = ', '.join(f'{k}: {tuple(state_dict[k].shape)} in the checkpoint, '
                          f'{expected[k]} in the model'
                          for k in shapes[:_MAX_KEYS_SHOWN])
        more = f', and {len(shapes) - _MAX_KEYS_SHOWN} more' if len(
            shapes) > _MAX_KEYS_SHOWN else ''
        parts.append(f'{len(shapes)} tensors of another shape ({shown}{more})')
    name = config if isinstance(config, str) else 'the config'
    if QAT_ITER_KEY in state_dict and QAT_ITER_KEY not in expected:
        raise ValueError(
            f'weights {os.fspath(weights)} are a QAT checkpoint (tools/train.py '
            '--qat), which the float model of ' + name + ' cannot load: export it to '
            'its int8 file (tools/deployment/export_executorch.py or export_onnx.py '
            'CONFIG CHECKPOINT OUT) and use that, or evaluate it with tools/test.py')
    hint = _suggest_config(state_dict, meta, model, shapes, missing, unexpected)
    raise ValueError(f'weights {os.fspath(weights)} do not match {name}: '
                     f'{"; ".join(parts)}. {hint}')


def _first(keys: List[str]) -> str:
    more = f', ... {len(keys) - _MAX_KEYS_SHOWN} more' if len(
        keys) > _MAX_KEYS_SHOWN else ''
    return ', '.join(keys[:_MAX_KEYS_SHOWN]) + more


def _suggest_config(state_dict, meta, model, shapes, missing, unexpected) -> str:
    """What the user should do: the checkpoint's own config if its meta names one."""
    named = meta.get('config')  # our converters
    if not named and isinstance(meta.get('experiment_name'), str):
        # tools/train.py (mmengine): '<config stem>_<YYYYMMDD_HHMMSS>'
        stem = re.sub(r'_\d{8}_\d{6}$', '', meta['experiment_name'])
        if (ROOT / 'configs' / f'{stem}.py').is_file():
            named = f'configs/{stem}.py'
    if named:
        return f'The checkpoint was made for {named}: pass model={named!r}.'
    prefixes = {k.split('.', 1)[0] for k in state_dict}
    if 'decode_head' in prefixes and not hasattr(model, 'decode_head'):
        return ('It holds a segmentation model (decode_head.*): pass a segmentation '
                'config.')
    if 'bbox_head' in prefixes and not hasattr(model, 'bbox_head'):
        return 'It holds a detection model (bbox_head.*): pass a detection config.'
    if prefixes <= {'backbone', 'head'}:
        return ('It holds a backbone (or classifier), not a whole model: start a '
                "training from it with model.backbone.init_cfg=dict(type='Pretrained', "
                "checkpoint=..., prefix='backbone.').")
    heads = ('bbox_head.', 'decode_head.', 'auxiliary_head.')
    if shapes and not (missing or unexpected) and all(k.startswith(heads)
                                                      for k in shapes):
        return ('Only head tensors differ: the checkpoint predicts another number of '
                'classes; pass the config it was trained with (or one with its '
                'num_classes).')
    return 'Pass the config the checkpoint was trained with.'


def load_into(model: torch.nn.Module, weights, config,
              loaded: Optional[Tuple[dict, dict]] = None) -> dict:
    """Load the checkpoint ``weights`` into ``model`` strictly (after
    :func:`check_state_dict`) and return its meta; ``loaded``: what
    :func:`load_weights` already read from it."""
    state_dict, meta = loaded if loaded is not None else load_weights(weights)
    check_state_dict(model, state_dict, meta, weights, config)
    model.load_state_dict(state_dict, strict=True)
    return meta


def check_fits(model: torch.nn.Module, weights, config) -> None:
    """Raise (as :func:`check_state_dict`) unless the checkpoint ``weights`` loads
    strictly into ``model``; loads nothing into it. For the tools that leave the
    loading to mmengine's Runner (``tools/test.py``, ``tools/train.py --resume``),
    whose own loading only warns about what does not fit."""
    if hasattr(model, 'module'):  # a distributed wrapper
        model = model.module
    state_dict, meta = load_weights(weights)
    check_state_dict(model, state_dict, meta, weights, config)
