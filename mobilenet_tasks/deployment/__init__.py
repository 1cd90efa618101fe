"""Deployment: ONNX export (standard operators only), parity with PyTorch, int8
quantization and Conv-BN folding. Running exported files is :mod:`mobilenet_tasks.
backends`' job; measuring them is :mod:`mobilenet_tasks.analysis`'."""
from .detection_graph import DetectorPostprocessed, DetectorRawOutputs
from .fuse import FuseReport, fuse_conv_bn
from .onnx_export import (NonStandardOpError, SegmentorLogits, check_standard_ops,
                          default_input_shape, export_loaded, export_model,
                          export_segmentor, load_model, read_metadata)
from .parity import compare_with_onnxruntime
from .quantize import QuantizationError, quantize_model

__all__ = ['export_model', 'export_segmentor', 'export_loaded', 'load_model',
           'default_input_shape', 'compare_with_onnxruntime', 'check_standard_ops',
           'read_metadata', 'NonStandardOpError', 'SegmentorLogits',
           'DetectorPostprocessed', 'DetectorRawOutputs', 'fuse_conv_bn', 'FuseReport',
           'quantize_model', 'QuantizationError']
