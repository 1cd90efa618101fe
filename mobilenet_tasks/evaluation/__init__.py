"""Evaluation metrics of mobilenet_tasks (in ``mobilenet_tasks.registry.METRICS``)."""
from .cityscapes_metric import CityscapesMetric

__all__ = ['CityscapesMetric']
