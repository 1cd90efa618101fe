"""Reading and editing the ONNX graphs that quantization works on: loading with clear
errors, the input, the network / post-processing split, op counts of a QDQ graph."""
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, os.PathLike]

#: Operators that compute features: they and everything feeding them are quantized.
COMPUTE_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')


class QuantizationError(ValueError):
    """The model cannot be quantized as asked: the message says why and what to do."""


# -- the ONNX model ----------------------------------------------------------------
def load_onnx(path: PathLike):
    """Load an fp32 ONNX model with clear errors for a missing or non-ONNX file, or a
    model that is already quantized."""
    import onnx
    from google.protobuf.message import DecodeError
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such file; pass the .onnx file '
                                'tools/deployment/export_onnx.py wrote')
    if os.path.isdir(path):
        raise QuantizationError(f'{path}: is a folder; pass the .onnx file')
    try:
        model = onnx.load(path)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise QuantizationError(
            f'{path}: not an ONNX model ({type(e).__name__}: {e}); pass the .onnx '
            'file tools/deployment/export_onnx.py wrote, not a checkpoint or an '
            'image') from e
    if not model.graph.node:
        raise QuantizationError(f'{path}: not an ONNX model (no graph nodes); pass '
                                'the .onnx file tools/deployment/export_onnx.py wrote')
    quantized = [n.op_type for n in model.graph.node
                 if n.op_type in ('QuantizeLinear', 'DequantizeLinear', 'QLinearConv',
                                  'ConvInteger', 'MatMulInteger')]
    if quantized:
        raise QuantizationError(f'{path}: already quantized (it holds {quantized[0]} '
                                'nodes); pass the fp32 model')
    return model


def input_spec(model) -> Tuple[str, Optional[Tuple[int, int]]]:
    """``(input name, (H, W) or None if height or width are dynamic)`` of a model with
    one ``N x 3 x H x W`` input."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise QuantizationError(f'the model has {len(inputs)} inputs '
                                f'({", ".join(i.name for i in inputs)}); expected one '
                                'image batch N x 3 x H x W, as export_onnx.py writes')
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or (dims[1].HasField('dim_value') and dims[1].dim_value != 3):
        shape = [d.dim_value if d.HasField('dim_value') else d.dim_param for d in dims]
        raise QuantizationError(f'the model input {inputs[0].name} has shape {shape}; '
                                'expected N x 3 x H x W')
    if all(d.HasField('dim_value') for d in dims[2:]):
        return inputs[0].name, (dims[2].dim_value, dims[3].dim_value)
    return inputs[0].name, None


def postprocessing_nodes(model) -> List[str]:
    """Names of the nodes after the network's last convolutions: those that are not
    in :data:`COMPUTE_OPS` and feed none of them (directly or through other nodes).

    The network is every compute node and all its ancestors; what remains turns the
    last features into outputs (softmax, box decoding, TopK / NMS, gathers, the sum and
    resize of logits) and is left float.
    """
    nodes = list(model.graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    network = set()
    stack = [i for i, node in enumerate(nodes) if node.op_type in COMPUTE_OPS]
    if not stack:
        raise QuantizationError('the model has no Conv, ConvTranspose, Gemm or MatMul '
                                'node: nothing to quantize')
    while stack:
        index = stack.pop()
        if index in network:
            continue
        network.add(index)
        stack.extend(producer[i] for i in nodes[index].input if i in producer)
    return [node.name for i, node in enumerate(nodes) if i not in network]


def _name_nodes(model) -> None:
    """Give unnamed (or twice named) nodes unique names: the quantizer selects the
    nodes to exclude by name."""
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            name = f'{node.op_type}_{i}'
            while name in seen:
                name += '_'
            node.name = name
        seen.add(node.name)


def _drop_unused_opsets(model) -> None:
    """Remove opset imports of domains no node uses (``quant_pre_process`` saves the
    model with every domain onnxruntime knows, which is not standard ONNX)."""
    used = {n.domain or '' for n in model.graph.node}
    keep = [o for o in model.opset_import if (o.domain or '') in used | {'', 'ai.onnx'}]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def op_counts(model) -> Tuple[Counter, Counter]:
    """``(quantized, float)``: op type -> number of nodes (other than Q/DQ).

    A node counts as quantized when it is a QDQ group: every float input comes from a
    ``DequantizeLinear`` and every output goes only to ``QuantizeLinear`` nodes (or is
    an integer tensor). onnxruntime fuses such groups into integer kernels
    (``QLinearConv``, ``QLinearAdd``...) where it has one and otherwise runs the
    operator in float between the conversions; anything else reads or writes float
    tensors.
    """
    producer = {out: n.op_type for n in model.graph.node for out in n.output}
    consumers: Dict[str, List[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    outputs = {o.name for o in model.graph.output}
    constants = {t.name for t in model.graph.initializer}
    quantized, floating = Counter(), Counter()
    for node in model.graph.node:
        if node.op_type in ('QuantizeLinear', 'DequantizeLinear', 'Constant'):
            continue
        inputs = [i for i in node.input if i and i not in constants
                  and producer.get(i) != 'Constant']
        ins = bool(inputs) and all(producer.get(i) == 'DequantizeLinear'
                                   for i in inputs)
        outs = all(name not in outputs and consumers.get(name)
                   and set(consumers[name]) == {'QuantizeLinear'}
                   for name in node.output)
        (quantized if ins and outs else floating)[node.op_type] += 1
    return quantized, floating


def network_model(model, excluded: Sequence[str]):
    """A copy of ``model`` without the ``excluded`` nodes, whose outputs are the
    tensors the removed nodes read (and the original outputs the rest produces).

    Calibration runs on it: onnxruntime's calibrators record every float tensor of
    the model they run, and the histogram ones (percentile, entropy) stack each
    tensor over the images, which fails on the NMS outputs (a different number of
    boxes on each image); the post-processing is not quantized anyway.
    """
    import onnx
    excluded = set(excluded)
    model = onnx.shape_inference.infer_shapes(model)
    if not excluded:
        return model
    graph = model.graph
    kept = [n for n in graph.node if n.name not in excluded]
    produced = {o for n in kept for o in n.output}
    wanted = []
    for node in graph.node:
        if node.name in excluded:
            wanted += [i for i in node.input if i in produced]
    wanted += [o.name for o in graph.output if o.name in produced]
    infos = {v.name: v for v in list(graph.value_info) + list(graph.output)}
    outputs = []
    for name in dict.fromkeys(wanted):  # unique, in order
        outputs.append(infos.get(name) or onnx.helper.make_tensor_value_info(
            name, onnx.TensorProto.FLOAT, None))
    used = {i for n in kept for i in n.input}
    new = onnx.helper.make_graph(
        kept, graph.name, graph.input, outputs,
        initializer=[t for t in graph.initializer if t.name in used],
        value_info=[v for v in graph.value_info if v.name in produced])
    out = onnx.helper.make_model(new, opset_imports=model.opset_import,
                                 ir_version=model.ir_version)
    return out
