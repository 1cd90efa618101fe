"""Exporting models for deployment (ONNX, standard operators only)."""
from .onnx_export import (NonStandardOpError, check_standard_ops,
                          compare_with_onnxruntime, export_segmentor,
                          read_metadata)

__all__ = ['export_segmentor', 'compare_with_onnxruntime', 'check_standard_ops',
           'read_metadata',
           'NonStandardOpError']
