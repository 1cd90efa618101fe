"""MobileNet dense-prediction suite for OpenMMLab (mmdet, mmseg, mmpretrain).

Importing the package checks the OpenMMLab versions and nothing else, so that the
tools answer ``--help`` at once. Everything else loads when it is used:

- Our registered names (``type='mobilenet_tasks.MobileNetV3'`` in any mmdet, mmseg or
  mmpretrain config) register themselves. mmengine imports
  :mod:`mobilenet_tasks.registry` for the scope, and the registry imports the modules
  that register its names (its ``locations``). Nothing needs to be imported first.
  ``register_all_modules()`` imports all of them and sets the default scope.
- The allow-list for mmengine checkpoints under torch's ``weights_only`` loading
  (:mod:`mobilenet_tasks.utils.checkpoint`) is installed by the registry, by
  ``tools/train.py`` and ``tools/test.py``, and by our weights loader.
- ``mobilenet_tasks.MODELS``, ``mobilenet_tasks.register_all_modules`` and the
  subpackages (``mobilenet_tasks.models`` ...) are attributes loaded on first access.
"""
from .utils.lazy import lazy_attributes
from .utils.version_check import check_dependencies
from .version import __version__

check_dependencies()

_SUBPACKAGES = ('analysis', 'apis', 'backends', 'converters', 'datasets', 'deployment',
                'engine', 'evaluation', 'models', 'registry', 'testing', 'utils')
# attribute -> the module that defines it, imported on first access (PEP 562); the
# subpackages are attributes too
_LAZY = {
    'MODELS': '.registry',
    'register_all_modules': '.utils.setup_env',
    'allow_mmengine_checkpoints': '.utils.checkpoint',
}
__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals(), _SUBPACKAGES)

__all__ = ['__version__', 'MODELS', 'register_all_modules']
