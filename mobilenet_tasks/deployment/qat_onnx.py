"""ONNX QDQ export of a QAT checkpoint: the int8 graph ``convert_pt2e`` makes of the
trained QAT graph (:mod:`.qat`), the one the ExecuTorch export lowers, written with
standard ``QuantizeLinear`` / ``DequantizeLinear`` operators, for onnxruntime and
OpenVINO (``tools/deployment/export_openvino.py`` converts it).

    python tools/deployment/export_onnx.py QAT_CONFIG qat.pth --out qat.onnx [--no-nms]

- **Exporter**: ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``): the
  TorchScript exporter of the float models cannot read ``quantized_decomposed``
  operators; the dynamo exporter maps them to QDQ pairs, the weights to int8
  initializers with per-channel ``DequantizeLinear`` (axis 0). Opset
  :data:`QAT_OPSET`.
- **Activations uint8**: the QAT graph's activations are int8 with a zero point
  (XNNPACK's format). onnxruntime's x86 provider fuses far fewer convolutions into
  integer kernels with int8 activations (see :mod:`.quantize`), so every activation
  Q/DQ pair is rewritten as uint8 with its zero point moved by 128: the same numbers
  (``q_u8 = q_s8 + 128``, the same scale), onnxruntime's preferred u8s8 path. Weights
  stay int8, symmetric, per channel.
- **One size, raw detection outputs**: the graph is the ExecuTorch export's
  (segmentation logits; the detection head's raw outputs, post-processed by mmdet's
  code in :class:`~mobilenet_tasks.backends.BackendModel`): ``nms=False`` only.
- The metadata is the float export's (:func:`~.export_common.common_metadata`) plus
  ``quantization`` (``method: 'qat'``), so ``tools/test.py CONFIG qat.onnx`` and the
  inferencer run it as any exported file.
"""
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mobilenet_tasks.backends.base import require

QAT_OPSET = 18


def _activation_zero_points_to_uint8(proto) -> int:
    """Rewrite int8 activation Q/DQ zero points as uint8 (+128); the number of zero
    point tensors rewritten. A zero point is an activation's when its Q or DQ node
    does not read an initializer (weights are int8 initializers read by a DQ)."""
    from onnx import TensorProto, numpy_helper
    inits = {t.name: t for t in proto.graph.initializer}
    constants = {n.output[0]: n for n in proto.graph.node if n.op_type == 'Constant'}
    activation_zps, quantized = set(), set()
    for node in proto.graph.node:
        if node.op_type not in ('QuantizeLinear', 'DequantizeLinear') or len(
                node.input) < 3:
            continue
        if node.input[0] in inits or node.input[0] in constants:
            continue  # a weight's
        activation_zps.add(node.input[2])
        if node.op_type == 'QuantizeLinear':
            quantized.add(node.output[0])
    # the recorded types of the quantized tensors follow their zero points
    for info in list(proto.graph.value_info) + list(proto.graph.output):
        if (info.name in quantized
                and info.type.tensor_type.elem_type == TensorProto.INT8):
            info.type.tensor_type.elem_type = TensorProto.UINT8
    count = 0
    for name in sorted(activation_zps):
        if name in inits:
            tensor = inits[name]
        elif name in constants:
            tensor = next(a.t for a in constants[name].attribute if a.name == 'value')
        else:
            raise ValueError(f'zero point {name} is neither an initializer nor a '
                             'constant: cannot rewrite it')
        if tensor.data_type != TensorProto.INT8:
            continue
        value = numpy_helper.to_array(tensor).astype(np.int16) + 128
        tensor.CopyFrom(numpy_helper.from_array(value.astype(np.uint8), tensor.name))
        count += 1
    return count


def export_qat_onnx(qat_model, cfg, meta, config, out_path, input_shape: Sequence[int],
                    nms: bool = False, dynamic: bool = False) -> str:
    """Write the int8 QDQ ONNX file of a loaded :class:`~.qat_model.QATModel` (see the
    module docstring); returns ``out_path``.

    Raises:
        ValueError: ``nms=True`` (detection) or ``dynamic``.
        RuntimeMissingError: onnxscript is not installed.
        NonStandardOpError: An operator outside the default domain (file removed).
    """
    import onnx

    from .export_common import (_check_shape, check_standard_ops, common_metadata,
                                network_for_export, write_metadata)
    if dynamic:
        raise ValueError('a QAT model is exported at one size: drop --dynamic')
    task_model = qat_model.torch_model
    if qat_model.task == 'detection' and nms:
        raise ValueError('a QAT detector is exported with the head\'s raw outputs (its '
                         'int8 graph is the network; box decoding and NMS run in '
                         'mmdet\'s code after it): pass --no-nms (nms=False)')
    require('onnxscript', 'the ONNX export of QAT models (torch.onnx dynamo)',
            'onnxscript')
    h, w = _check_shape(tuple(input_shape))
    dummy = torch.zeros(1, 3, h, w)
    _, output_names, metadata = network_for_export(task_model, dummy)
    metadata.update(common_metadata(
        task_model, cfg, meta, config, (h, w), False, QAT_OPSET,
        exporter=f'torch.onnx.export(dynamo=True) of the convert_pt2e graph, '
                 f'torch {torch.__version__}'))
    metadata['quantization'] = json.dumps(dict(
        format='QDQ', quantizer='XNNPACKQuantizer (PT2E QAT)', weight_type='int8',
        activation_type='uint8 (int8 zero points + 128)', per_channel=True,
        method='qat', qat_iters=int(qat_model.qat_iter),
        keep_float=list(qat_model.keep_float)))
    graph = qat_model.converted_graph()
    out_path = os.fspath(out_path)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        graph(dummy)
        program = torch.onnx.export(graph, (dummy, ), dynamo=True, verbose=False,
                                    opset_version=QAT_OPSET, input_names=['input'],
                                    output_names=output_names, external_data=False)
    proto = program.model_proto
    _activation_zero_points_to_uint8(proto)
    check_standard_ops(proto)  # (before anything is written)
    onnx.checker.check_model(proto)
    write_metadata(proto, metadata, out_path)
    return out_path


__all__ = ['export_qat_onnx', 'QAT_OPSET']
