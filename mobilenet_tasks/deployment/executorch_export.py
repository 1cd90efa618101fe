"""ExecuTorch export of the detection and segmentation models: ``.pte`` programs
delegated to XNNPACK, in float32 or int8 (PT2E post-training quantization with
XNNPACK's own quantizer).

    from mobilenet_tasks.deployment.executorch_export import export_executorch
    report = export_executorch('configs/lraspp_v3_large_demo.py', 'iter_400.pth',
                               'lraspp_int8.pte', int8=True, split='train')
    print(report)

The graph is the ONNX export's, so that every runtime runs the same network:

- segmentation: :class:`~.onnx_export.SegmentorLogits` (backbone, decode head, the
  bilinear resize of the logits to the input), output ``logits``;
- detection: :class:`~.detection_graph.DetectorRawOutputs`, the head's raw outputs
  ``cls_score_<i>``, ``bbox_pred_<i>`` (as ONNX ``nms=False``): box decoding and NMS
  are mmdet's own ``predict_by_feat``, run by :class:`~mobilenet_tasks.backends.
  BackendModel` on them. XNNPACK has no NMS, and post-processing in float is the
  same code as PyTorch's.

Input ``input``, ``1 x 3 x H x W`` float32, preprocessed as the ONNX input (test
resize, BGR -> RGB, ``(x - mean) / std``); one static size (the test pipeline's, or
``input_shape``). The metadata is the ONNX file's (:func:`~.onnx_export.
common_metadata`), stored as a JSON string returned by the program's constant method
``mobilenet_tasks_metadata`` (:mod:`mobilenet_tasks.backends.executorch` reads it),
plus ``input_names``, ``output_names`` and, for int8, ``quantization``.

Steps: ``torch.export.export`` of the wrapper; for int8, ``prepare_pt2e`` with
``XNNPACKQuantizer`` (symmetric int8 weights per output channel, int8 activations with
a zero point: ``get_symmetric_quantization_config(is_per_channel=True)``, whose
activation ranges come from a histogram observer; ``observer='minmax'`` takes the
observed range instead), calibration
on dataset images through the config's test preprocessing (the same images and code as
the onnxruntime quantizer, :mod:`.calibration`), ``convert_pt2e`` and a second export;
then ``to_edge_transform_and_lower(..., partitioner=[XnnpackPartitioner()])`` and
``to_executorch()``. BatchNorm is folded into the convolutions by XNNPACK's passes
(float) or by ``convert_pt2e`` (int8).

**Delegation.** Every operator XNNPACK does not take runs on ExecuTorch's portable
kernels instead, much slower: :class:`ExecuTorchReport` lists them (``not_delegated``),
the tool prints them, and ``require_delegation=True`` fails. Not counted: ``getitem``
(tuple plumbing), ``alloc`` and ``_to_dim_order_copy`` (the copies of the outputs from
XNNPACK's memory layout back to contiguous NCHW, one an output), listed apart as
``layout``.

**What stays float in int8** (``keep_float``, measured in the README's table):
XNNPACK's quantizer annotates convolutions (with a fused ReLU / ReLU6), adds,
multiplies, average pools and concatenations; h-swish has no quantized XNNPACK kernel
and runs in float between a dequantize and a quantize (``hswish='float'``);
``hswish='int8'`` writes it as ``x * hardtanh(x + 3, 0, 6) / 6`` (and the SE gate's
hard-sigmoid alike) so that it runs on quantized adds, clamps and multiplies.
``keep_float`` names parts of the model left entirely float: ``'se'`` (the
squeeze-and-excitation branches), ``'head'`` (the detection or decode head), ``'stem'``
(the first convolution). Measured on the demo models
(``tools/analysis_tools/int8_recipes.py``, an AVX-512 VNNI Xeon, 1 thread): the default,
nothing float and h-swish float, was the fastest within 0.3 mIoU of the float
segmentor (int8 / fp32 latency 0.86); h-swish on quantized ops was slower (1.01), SE
or head float no faster. No recipe kept the demo detector within 1 mAP point (10.1
against 12.8: its activation outliers need clipped ranges).
"""
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from mobilenet_tasks.backends.base import require
from mobilenet_tasks.utils.task import task_of_config

from .export_common import _check_shape, common_metadata, network_for_export
from .onnx_export import default_input_shape, load_model
from .onnx_graph import QuantizationError
from .options import ACTIVATION_OBSERVERS, FLOAT_PARTS, HSWISH_MODES

PathLike = Union[str, os.PathLike]

#: The int8 recipe chosen by measurement (README, "int8 recipes").
DEFAULT_KEEP_FLOAT: Tuple[str, ...] = ()
DEFAULT_HSWISH = 'float'
#: Nodes outside the delegate that move data rather than compute.
LAYOUT_OPS = ('alloc', 'getitem', 'dim_order_ops__to_dim_order_copy_default',
              'aten__to_copy_default')


class DelegationError(RuntimeError):
    """Operators of the model that XNNPACK does not take (``require_delegation``)."""


@dataclass
class ExecuTorchReport:
    """What :func:`export_executorch_loaded` wrote.

    Attributes:
        out_path (str): The ``.pte`` file.
        int8 (bool): Quantized or float32.
        file_bytes (int): Its size.
        delegated (Counter): Operator -> nodes run by XNNPACK.
        not_delegated (Counter): Operator -> nodes left to ExecuTorch's portable
            kernels (compute the delegate did not take; empty for our models).
        layout (Counter): Data-movement nodes outside the delegate (see the module
            docstring).
        quantization (dict): The int8 settings (the file's ``quantization`` metadata).
    """
    out_path: str
    int8: bool
    file_bytes: int
    delegated: Counter = field(default_factory=Counter)
    not_delegated: Counter = field(default_factory=Counter)
    layout: Counter = field(default_factory=Counter)
    quantization: dict = field(default_factory=dict)

    def __str__(self) -> str:
        def ops(counter):
            return ', '.join(f'{k} {v}' for k, v in sorted(counter.items())) or 'none'
        kind = 'int8 (PT2E, XNNPACKQuantizer)' if self.int8 else 'float32'
        lines = [f'ExecuTorch program ({kind}, XNNPACK): {self.out_path}, '
                 f'{self.file_bytes / 1e6:.2f} MB',
                 f'  delegated to XNNPACK: {sum(self.delegated.values())} nodes',
                 f'  not delegated: {ops(self.not_delegated)}',
                 f'  layout copies outside the delegate: {ops(self.layout)}']
        if self.int8 and self.quantization.get('method') == 'qat':
            q = self.quantization
            lines.insert(1, f'  quantization-aware training: {q.get("qat_iters")} '
                            'iterations; float parts: '
                            f'{", ".join(q.get("keep_float") or []) or "none"}')
        elif self.int8:
            q = self.quantization
            lines.insert(1, f'  calibration: {q.get("calibration_images")} images from '
                            f'{q.get("calibration_source")}; float parts: '
                            f'{", ".join(q.get("keep_float") or []) or "none"}; '
                            f'h-swish {q.get("hswish")}')
        return '\n'.join(lines)


# -- int8 recipe pieces -----------------------------------------------------------
class QuantizableHardswish(nn.Module):
    """``x * hardtanh(x + 3, 0, 6) / 6``: h-swish on ops XNNPACK quantizes (add, clamp,
    multiply), equal to ``nn.Hardswish`` in float."""

    def forward(self, x):
        return x * (F.hardtanh(x + 3.0, 0.0, 6.0) * (1.0 / 6.0))


class QuantizableHardsigmoid(nn.Module):
    """``hardtanh(x + 3, 0, 6) / 6``, as :class:`QuantizableHardswish`."""

    def forward(self, x):
        return F.hardtanh(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def _swap_hard_activations(module: nn.Module) -> int:
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Hardswish):
            setattr(module, name, QuantizableHardswish())
            swapped += 1
        elif isinstance(child, nn.Hardsigmoid):
            setattr(module, name, QuantizableHardsigmoid())
            swapped += 1
        else:
            swapped += _swap_hard_activations(child)
    return swapped


def float_module_names(wrapper: nn.Module, keep_float: Sequence[str]):
    """The qualified names of ``wrapper``'s modules that ``keep_float`` leaves float."""
    bad = [p for p in keep_float if p not in FLOAT_PARTS]
    if bad:
        raise ValueError(f'keep_float parts must be among {FLOAT_PARTS}, got {bad}')
    names = []
    for name, module in wrapper.named_modules():
        kind = type(module).__name__
        leaf = name.rsplit('.', 1)[-1]
        if 'se' in keep_float and kind == 'SqueezeExcitation':
            names.append(name)
        elif 'head' in keep_float and leaf in ('bbox_head', 'decode_head'):
            names.append(name)
    if 'stem' in keep_float:
        first = next((n for n, m in wrapper.named_modules()
                      if isinstance(m, nn.Conv2d)), None)
        if first is not None:
            names.append(first)
    return names


# -- export --------------------------------------------------------------------------
def executorch_version() -> str:
    """The installed executorch's version (the package has no ``__version__``)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version('executorch')
    except PackageNotFoundError:  # pragma: no cover - imported but not installed
        return 'unknown'


def static_input_shape(cfg) -> Tuple[int, int]:
    """The one input size a static program is exported for, ``(H, W)``: detection as
    :func:`~.onnx_export.default_input_shape`; segmentation the test pipeline's
    ``Resize`` scale (``(2048, 1024)`` gives 1024x2048: what the Cityscapes test
    resize gives every Cityscapes image, and any image of that aspect ratio), else
    ``default_input_shape``. Images of another shape need ``input_shape``."""
    if task_of_config(cfg) == 'segmentation':
        from mobilenet_tasks.apis.preprocess import config_test_pipeline
        for t in config_test_pipeline(cfg):
            scale = t.get('scale')
            if (str(t['type']).split('.')[-1] == 'Resize' and
                    isinstance(scale, (tuple, list)) and len(scale) == 2):
                return int(scale[1]), int(scale[0])
    return default_input_shape(cfg)


def _calibration_batches(config, cfg, images, split, num_images, size, task):
    from .calibration import ImageCalibrationReader, calibration_images
    paths, source = calibration_images(config, images, split, num_images)
    reader = ImageCalibrationReader(paths, cfg, 'input', size, task)
    return [torch.from_numpy(b) for b in reader.batches], source


def quantization_config(per_channel: bool = True, observer: str = 'histogram'):
    """XNNPACK's static int8 config (``get_symmetric_quantization_config``), its
    activation observer ``'histogram'`` (XNNPACK's default, torchao's
    ``HistogramObserver``: the range that minimises the L2 rounding + clipping error
    over a histogram) or ``'minmax'`` (the observed range, Jacob et al.'s)."""
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import \
        get_symmetric_quantization_config
    if observer not in ACTIVATION_OBSERVERS:
        raise ValueError(f'observer must be one of {ACTIVATION_OBSERVERS}, got '
                         f'{observer!r}')
    config = get_symmetric_quantization_config(is_per_channel=per_channel)
    if observer == 'histogram':
        return config
    from torchao.quantization.pt2e import MinMaxObserver
    act = dataclasses.replace(
        config.input_activation,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _quantize(wrapper, dummy, batches, keep_float, per_channel, observer):
    require('executorch', 'ExecuTorch', 'executorch')
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import \
        XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    quantizer = XNNPACKQuantizer().set_global(
        quantization_config(per_channel, observer))
    names = float_module_names(wrapper, keep_float)
    if names:  # (set_module_name(name, None) is refused by XNNPACKQuantizer 1.5)
        from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter
        inside = [get_module_name_filter(n) for n in names]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in inside))
    graph = torch.export.export(wrapper, (dummy, )).module()
    graph = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in batches:
            graph(batch)
    return convert_pt2e(graph)


def _delegation(edge) -> Tuple[Counter, Counter, Counter]:
    from executorch.devtools.backend_debug import get_delegation_info
    info = get_delegation_info(edge.exported_program().graph_module)
    frame = info.get_operator_delegation_dataframe()
    delegated, outside, layout = Counter(), Counter(), Counter()
    for _, row in frame.iterrows():
        op = str(row['op_type'])
        if op == 'Total':
            continue
        if int(row['occurrences_in_delegated_graphs']):
            delegated[op] = int(row['occurrences_in_delegated_graphs'])
        n = int(row['occurrences_in_non_delegated_graphs'])
        if n:
            (layout if op in LAYOUT_OPS else outside)[op] = n
    return delegated, outside, layout


def lower_checked(module: nn.Module, example: torch.Tensor, constant_methods: dict,
                  require_delegation: bool = False):
    """``torch.export`` ``module`` on ``example`` and lower it to XNNPACK.

    Returns:
        tuple: ``(ExecutorchProgramManager, delegated, not_delegated, layout)``, the
        last three Counters of operator -> nodes (see :class:`ExecuTorchReport`).

    Raises:
        DelegationError: ``require_delegation`` and a compute operator left out.
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import \
        XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    program = torch.export.export(module, (example, ))
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                       constant_methods=constant_methods or None)
    delegated, outside, layout = _delegation(edge)
    if outside and require_delegation:
        raise DelegationError(
            f'XNNPACK does not take these operators of the model: '
            f'{", ".join(f"{k} ({v})" for k, v in sorted(outside.items()))}; they would '
            'run on ExecuTorch\'s portable kernels. Replace the modules that make them '
            'or export without require_delegation')
    return edge.to_executorch(), delegated, outside, layout


def export_executorch_loaded(model: nn.Module, cfg, meta: dict, config,
                             out_path: PathLike,
                             input_shape: Optional[Sequence[int]] = None,
                             int8: bool = False,
                             images=None, split: str = 'train',
                             num_images: Optional[int] = 32,
                             keep_float: Optional[Sequence[str]] = None,
                             hswish: Optional[str] = None,
                             per_channel: bool = True,
                             observer: str = 'histogram',
                             require_delegation: bool = False) -> ExecuTorchReport:
    """Export a model already loaded by :func:`~.onnx_export.load_model` to a ``.pte``
    program delegated to XNNPACK (see the module docstring).

    Args:
        model, cfg, meta, config: From ``load_model`` (``config``: its path, stored in
            the metadata).
        out_path (str): The ``.pte`` file (its folder is created).
        input_shape (tuple[int, int], optional): ``(H, W)``; default the test
            pipeline's size (:func:`static_input_shape`).
        int8 (bool): PT2E int8 (calibrated) instead of float32. A
            :class:`~.qat_model.QATModel` (a QAT checkpoint) is always int8, with its
            trained ranges and float parts: no calibration, and the int8 options
            below must be left unset.
        images, split, num_images: Calibration images (int8), as
            :func:`~.quantize.quantize_model` takes them: a folder or files, else
            ``num_images`` of the config's ``split`` (default ``'train'``).
        keep_float (Sequence[str], optional): Parts left float (:data:`FLOAT_PARTS`);
            default :data:`DEFAULT_KEEP_FLOAT`.
        hswish (str, optional): ``'float'`` or ``'int8'`` (:data:`HSWISH_MODES`);
            default :data:`DEFAULT_HSWISH`.
        per_channel (bool): Per-output-channel weight scales (default).
        observer (str): The activation ranges: ``'histogram'`` (default) or
            ``'minmax'`` (:func:`quantization_config`).
        require_delegation (bool): Raise :class:`DelegationError` (and write nothing)
            if any compute operator is left outside XNNPACK.

    Raises:
        RuntimeMissingError: ExecuTorch is not installed.
        QuantizationError: Calibration images the config preprocesses to another size.
        DelegationError: See ``require_delegation``.
    """
    require('executorch', 'ExecuTorch', 'executorch')
    qat = hasattr(model, 'converted_graph')  # a QATModel: its trained ranges
    if qat:
        given = [name for name, value in (('keep_float', keep_float),
                                          ('hswish', hswish)) if value is not None]
        if given or observer != 'histogram' or not per_channel or images is not None:
            raise ValueError(
                'a QAT checkpoint is exported with the quantization it was trained '
                'with: its ranges are learnt (no calibration images, observer or '
                'per_channel) and its float parts are the QAT run\'s '
                f'(keep_float={list(model.keep_float)}); drop '
                f'{", ".join(given) or "the int8 options"}')
        int8, keep_float, hswish = True, tuple(model.keep_float), 'float'
        qat_model, model = model, model.torch_model
    keep_float = tuple(DEFAULT_KEEP_FLOAT if keep_float is None else keep_float)
    hswish = DEFAULT_HSWISH if hswish is None else hswish
    if hswish not in HSWISH_MODES:
        raise ValueError(f'hswish must be one of {HSWISH_MODES}, got {hswish!r}')
    if not int8 and (keep_float or hswish != 'float'):
        keep_float, hswish = (), 'float'  # float32: nothing to choose
    size = static_input_shape(cfg) if input_shape is None else input_shape
    h, w = _check_shape(tuple(size))
    out_path = os.fspath(out_path)
    if not out_path.endswith('.pte'):
        raise ValueError(f'{out_path}: an ExecuTorch program is a .pte file')
    dummy = torch.zeros(1, 3, h, w)
    wrapper, output_names, metadata = network_for_export(model, dummy)
    with torch.no_grad():
        wrapper(dummy)  # the model's own errors (e.g. a too small map) first, clearly
    metadata.update(common_metadata(
        model, cfg, meta, config, (h, w), False, None,
        exporter=f'torch.export + executorch {executorch_version()} '
                 '(XnnpackPartitioner)'))
    metadata['input_names'] = json.dumps(['input'])
    metadata['output_names'] = json.dumps(output_names)
    quantization = {}
    exported_module = wrapper
    if qat:
        exported_module = qat_model.converted_graph()
        quantization = dict(
            format='PT2E', quantizer='XNNPACKQuantizer', weight_type='int8',
            activation_type='int8', per_channel=True, method='qat',
            qat_iters=int(qat_model.qat_iter), keep_float=list(keep_float),
            hswish=hswish)
        metadata['quantization'] = json.dumps(quantization)
    elif int8:
        import copy
        wrapper = copy.deepcopy(wrapper)
        if hswish == 'int8':
            _swap_hard_activations(wrapper)
        batches, source = _calibration_batches(
            config if isinstance(config, str) and os.path.isfile(config) else cfg,
            cfg, images, split, num_images, (h, w), metadata['task'])
        exported_module = _quantize(wrapper, dummy, batches, keep_float, per_channel,
                                    observer)
        quantization = dict(
            format='PT2E', quantizer='XNNPACKQuantizer', weight_type='int8',
            activation_type='int8', per_channel=per_channel, method=observer,
            calibration_images=len(batches), calibration_source=source,
            keep_float=list(keep_float), hswish=hswish)
        metadata['quantization'] = json.dumps(quantization)
    program, delegated, outside, layout = lower_checked(
        exported_module, dummy, {'mobilenet_tasks_metadata': json.dumps(metadata)},
        require_delegation)
    buffer = program.buffer
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(buffer)
    os.replace(tmp, out_path)
    return ExecuTorchReport(out_path=out_path, int8=int8, file_bytes=len(buffer),
                            delegated=delegated, not_delegated=outside, layout=layout,
                            quantization=quantization)


def export_executorch(config, checkpoint: Optional[str] = None,
                      out_path: PathLike = 'model.pte', **kwargs) -> ExecuTorchReport:
    """Load ``config`` (and ``checkpoint``, strictly; None: random weights) and
    :func:`export_executorch_loaded` it; keyword arguments as that function's."""
    model, cfg, meta = load_model(config, checkpoint)
    return export_executorch_loaded(model, cfg, meta, config, out_path, **kwargs)


__all__ = ['export_executorch', 'export_executorch_loaded', 'ExecuTorchReport',
           'DelegationError', 'QuantizationError', 'FLOAT_PARTS', 'HSWISH_MODES',
           'QuantizableHardswish', 'QuantizableHardsigmoid', 'float_module_names',
           'lower_checked', 'static_input_shape']
