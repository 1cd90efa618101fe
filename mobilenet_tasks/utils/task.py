"""The task of a model or a config: ``'detection'`` or ``'segmentation'``.

One answer for every caller (the inferencer, export, quantization, the backends, the
benchmarks): a model is a detector if it is an mmdet ``BaseDetector`` and a segmentor
if it is an mmseg ``BaseSegmentor``; a config is what its ``model.type`` class is. A
model or config that is neither raises :class:`TaskError` saying so, instead of being
taken for "the other task".
"""
from typing import Optional

TASKS = ('detection', 'segmentation')


class TaskError(ValueError):
    """A model or config that is neither an mmdet detector nor an mmseg segmentor."""


def _bases():
    from mmdet.models.detectors import BaseDetector
    from mmseg.models.segmentors import BaseSegmentor
    return (('detection', BaseDetector), ('segmentation', BaseSegmentor))


def task_of_model(model, name: Optional[str] = None, what: str = '') -> str:
    """``'detection'`` or ``'segmentation'`` for a built model.

    A model that runs another one (a backend model: an exported file behind the
    PyTorch model's interface) answers with its own ``task`` attribute.

    Args:
        model (nn.Module): A built model.
        name (str, optional): The config's name, for the error message.
        what (str): What the caller does with it, appended to the error message
            (e.g. ``'the Inferencer runs detection and segmentation configs'``).

    Raises:
        TaskError: Neither a detector nor a segmentor.
    """
    own = getattr(model, 'task', None)
    if isinstance(own, str) and own in TASKS:
        return own
    for task, base in _bases():
        if isinstance(model, base):
            return task
    raise TaskError(_message(name, type(model).__name__, what))


def task_of_config(cfg, name: Optional[str] = None, what: str = '') -> str:
    """``'detection'`` or ``'segmentation'`` for a config, without building the model.

    The class of ``cfg.model.type`` is looked up in the config's ``default_scope``
    (``mobilenet_tasks`` if unset) and checked as :func:`task_of_model` does; a type
    that cannot be looked up (an uninstalled package) falls back on the model's keys:
    ``decode_head`` -> segmentation, ``bbox_head`` / ``roi_head`` / ``rpn_head`` ->
    detection.

    Raises:
        TaskError: Neither.
    """
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    if not isinstance(model, dict) or 'type' not in model:
        raise TaskError(f'{name or "the config"} has no model dict with a type')
    cls = _model_class(model['type'], cfg.get('default_scope') or 'mobilenet_tasks')
    if isinstance(cls, type):
        for task, base in _bases():
            if issubclass(cls, base):
                return task
        if getattr(cls, 'wraps_model', False) and isinstance(model.get('model'),
                                                              dict):
            # a backend model's config: the task of the model it runs
            return task_of_config(dict(model=model['model'],
                                       default_scope=cfg.get('default_scope')),
                                  name, what)
        raise TaskError(_message(name, cls.__name__, what))
    if 'decode_head' in model:
        return 'segmentation'
    if any(k in model for k in ('bbox_head', 'roi_head', 'rpn_head')):
        return 'detection'
    raise TaskError(_message(name, str(model['type']), what))


def _model_class(kind, scope: str):
    if isinstance(kind, type):
        return kind
    from mmengine.registry import MODELS
    try:
        with MODELS.switch_scope_and_registry(scope) as registry:
            return registry.get(kind)
    except Exception:  # noqa: BLE001 (an unimportable scope or an unknown name)
        return None


def _message(name: Optional[str], kind: str, what: str) -> str:
    text = (f'{name or "the config"} builds a {kind}, neither an mmdet detector nor an '
            'mmseg segmentor')
    return f'{text}: {what}' if what else text


def num_classes(model, task: Optional[str] = None) -> int:
    """The number of classes the model predicts (its decode head's or bbox head's;
    a two-stage detector's ``roi_head.bbox_head``)."""
    task = task or task_of_model(model)
    if task == 'segmentation':
        return int(model.decode_head.num_classes)
    head = getattr(model, 'bbox_head', None)
    if head is None and hasattr(model, 'roi_head'):
        head = model.roi_head.bbox_head
    return int(head.num_classes)
