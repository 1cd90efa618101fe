"""Datasets of mobilenet_tasks: the built-in synthetic demo sets, the Cityscapes
converter, and the data checks (:mod:`.checks`; importing this package registers their
:class:`~.checks.CheckedDataset` in the DATASETS registry)."""
from .demo_coco import (DEMO_CLASSES, DEMO_COCO_VERSION, DEMO_METAINFO, draw_demo_image,
                        image_rng, make_demo_coco)
from .cityscapes_convert import convert_cityscapes
from .demo_cityscapes import (CITYSCAPES_TRAIN_IDS, DEMO_CITYSCAPES_LABELS,
                              DEMO_CITYSCAPES_VERSION, draw_demo_street,
                              make_demo_cityscapes)
from .checks import CheckedDataset

__all__ = [
    'DEMO_CLASSES', 'DEMO_COCO_VERSION', 'DEMO_METAINFO', 'draw_demo_image', 'image_rng',
    'make_demo_coco'
]
__all__ += [
    'CITYSCAPES_TRAIN_IDS', 'DEMO_CITYSCAPES_LABELS', 'DEMO_CITYSCAPES_VERSION',
    'convert_cityscapes', 'draw_demo_street', 'make_demo_cityscapes'
]
__all__ += ['CheckedDataset']
