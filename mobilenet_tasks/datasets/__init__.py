"""Datasets of mobilenet_tasks: the built-in synthetic demo detection set."""
from .demo_coco import (DEMO_CLASSES, DEMO_COCO_VERSION, DEMO_METAINFO, draw_demo_image,
                        image_rng, make_demo_coco)

__all__ = [
    'DEMO_CLASSES', 'DEMO_COCO_VERSION', 'DEMO_METAINFO', 'draw_demo_image', 'image_rng',
    'make_demo_coco'
]
