from .backbones import *  # noqa: F401,F403
from .decode_heads import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
