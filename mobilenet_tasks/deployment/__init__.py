"""Deployment: ONNX export (standard operators only), running exported models with
onnxruntime, int8 quantization, Conv-BN folding and the speed benchmark."""
from .fuse import FuseReport, fuse_conv_bn
from .onnx_export import (NonStandardOpError, check_standard_ops,
                          compare_with_onnxruntime, default_input_shape,
                          export_loaded, export_model, export_segmentor, load_model,
                          read_metadata)
from .ort_model import ONNXRuntimeModel, onnx_model_config
from .quantize import QuantizationError, quantize_model

__all__ = ['export_model', 'export_segmentor', 'export_loaded', 'load_model',
           'default_input_shape', 'compare_with_onnxruntime', 'check_standard_ops',
           'read_metadata', 'NonStandardOpError', 'ONNXRuntimeModel',
           'onnx_model_config', 'fuse_conv_bn', 'FuseReport', 'quantize_model',
           'QuantizationError']
