"""Deployment: ONNX export (standard operators only), ExecuTorch export (XNNPACK,
float32 and PT2E int8), OpenVINO conversion and NNCF int8, parity with PyTorch, int8
quantization and Conv-BN folding. Running exported files is :mod:`mobilenet_tasks.
backends`' job; measuring them is :mod:`mobilenet_tasks.analysis`'.

The names below load on first access (PEP 562), so that a module of this package
(:mod:`.options`, the quantization choices a tool's parser needs) imports without
torch and onnxruntime."""

from mobilenet_tasks.utils.lazy import lazy_attributes

# name -> the module of this package that defines it
_LAZY = {
    'DetectorPostprocessed': '.detection_graph', 'DetectorRawOutputs': '.detection_graph',
    'FuseReport': '.fuse', 'fuse_conv_bn': '.fuse',
    'NonStandardOpError': '.onnx_export', 'SegmentorLogits': '.onnx_export',
    'check_standard_ops': '.onnx_export', 'default_input_shape': '.onnx_export',
    'export_loaded': '.onnx_export', 'export_model': '.onnx_export',
    'export_segmentor': '.onnx_export', 'load_model': '.onnx_export',
    'read_metadata': '.onnx_export',
    'compare_with_onnxruntime': '.parity', 'compare_with_backend': '.parity',
    'ExecuTorchReport': '.executorch_export', 'export_executorch': '.executorch_export',
    'export_executorch_loaded': '.executorch_export',
    'QuantizationError': '.quantize', 'quantize_model': '.quantize',
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = list(_LAZY)
