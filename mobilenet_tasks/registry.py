"""Registries of mobilenet_tasks: children of mmengine's root registries.

Their scope is ``mobilenet_tasks``: every name is reachable from any mmdet, mmseg or
mmpretrain config (and from ours, which set no ``default_scope`` and name every type
in full) as ``type='mobilenet_tasks.<Name>'``, e.g. ``'mobilenet_tasks.MobileNetV3'``.
Inside our scope (``register_all_modules()`` or ``default_scope='mobilenet_tasks'``)
the short name works too.

``locations`` are the modules that register each registry's names, exactly: building
a config imports them, so a config (a dumped one too) builds in a fresh process with no
``custom_imports`` (``tests/test_registry.py`` builds every registered name that way).
A new registered class goes in a module listed here, or in a package whose
``__init__`` imports it.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import Registry

from mobilenet_tasks.utils.checkpoint import allow_mmengine_checkpoints

# torch >= 2.6 loads with weights_only=True; mmengine checkpoints need their classes
# allow-listed (mmengine #1655). Every build of our names comes through here first.
allow_mmengine_checkpoints()

# Backbones, necks, heads and whole models; the models that run exported files. Also
# the checkpoint loader of ``mobilenet_tasks://`` addresses (pretrained starts): a
# model's init_cfg or load_from may name one, and building the model imports it.
CHECKPOINT_SCHEMES = ['mobilenet_tasks.converters.pretrained']
MODELS = Registry(
    'model', parent=MMENGINE_MODELS,
    locations=['mobilenet_tasks.models', 'mobilenet_tasks.backends.model',
               'mobilenet_tasks.deployment.qat_model',
               *CHECKPOINT_SCHEMES])
# Anchor generators and other task utilities.
TASK_UTILS = Registry(
    'task util', parent=MMENGINE_TASK_UTILS, locations=['mobilenet_tasks.models'])
# Datasets: the checked-dataset wrapper.
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, locations=['mobilenet_tasks.datasets'])
# Evaluation metrics.
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, locations=['mobilenet_tasks.evaluation'])
# Runner hooks: checkpointing and RNG state, the data-check report.
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS,
    locations=['mobilenet_tasks.engine', 'mobilenet_tasks.datasets.checks'])
# Model wrappers: DistributedDataParallel for CPU processes.
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS,
    locations=['mobilenet_tasks.engine'])


def import_checkpoint_schemes() -> None:
    """Register our checkpoint loaders with mmengine's ``CheckpointLoader`` (for code
    that loads a ``mobilenet_tasks://`` address before any model is built)."""
    import importlib
    for location in CHECKPOINT_SCHEMES:
        importlib.import_module(location)


ALL = dict(MODELS=MODELS, TASK_UTILS=TASK_UTILS, DATASETS=DATASETS, METRICS=METRICS,
           HOOKS=HOOKS, MODEL_WRAPPERS=MODEL_WRAPPERS)
