"""Registries of mobilenet_tasks: children of mmengine's root registries.

Their scope is ``mobilenet_tasks``, so our modules are reachable from any mmdet, mmseg or
mmpretrain config as ``type='mobilenet_tasks.MobileNetV3'`` and, in our own configs
(``default_scope='mobilenet_tasks'``), as ``type='MobileNetV3'``; mmdet's and mmseg's are
reached from ours as ``type='mmdet.SSDHead'``. ``locations`` makes building a config import
the module that registers a name, so no ``custom_imports`` is needed for our own names.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

# Backbones, necks, heads and whole models.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS,
    locations=['mobilenet_tasks.models', 'mobilenet_tasks.deployment.ort_model'])
# Anchor generators, box coders and other task utilities.
TASK_UTILS = Registry(
    'task util', parent=MMENGINE_TASK_UTILS, locations=['mobilenet_tasks.models'])
# Datasets (demo data, checked COCO and Cityscapes loaders).
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, locations=['mobilenet_tasks.datasets'])
# Data transforms.
TRANSFORMS = Registry(
    'transform',
    parent=MMENGINE_TRANSFORMS,
    locations=['mobilenet_tasks.datasets'])
# Evaluation metrics.
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, locations=['mobilenet_tasks.evaluation'])
# Runner hooks.
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, locations=['mobilenet_tasks.engine'])
# Visualizers for drawn results.
VISUALIZERS = Registry(
    'visualizer',
    parent=MMENGINE_VISUALIZERS,
    locations=['mobilenet_tasks.visualization'])
