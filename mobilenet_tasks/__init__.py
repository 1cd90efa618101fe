"""MobileNet dense-prediction suite for OpenMMLab (mmdet, mmseg, mmpretrain)."""
from .utils.version_check import check_dependencies
from .version import __version__

check_dependencies()

from .registry import MODELS  # noqa: E402
from . import models  # noqa: E402,F401  (registers the backbones)
from .utils.checkpoint import allow_mmengine_checkpoints  # noqa: E402
from .utils.setup_env import register_all_modules  # noqa: E402

# torch >= 2.6 loads with weights_only=True; mmengine checkpoints need their classes
# allow-listed (mmengine #1655). Other globals stay refused.
allow_mmengine_checkpoints()

__all__ = ['__version__', 'MODELS', 'register_all_modules']
