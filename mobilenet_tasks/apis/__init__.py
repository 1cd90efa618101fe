"""Inference on images, arrays and folders: :class:`Inferencer` and its results."""
from .inferencer import Inferencer
from .inputs import InputError, list_images, read_image, to_bgr_uint8
from .results import DetectionResult, SegmentationResult

__all__ = [
    'Inferencer', 'DetectionResult', 'SegmentationResult', 'read_image', 'list_images',
    'InputError', 'to_bgr_uint8'
]
