"""OpenVINO IR from the exported ONNX models, and post-training int8 with NNCF.

    from mobilenet_tasks.deployment.openvino_export import (convert_onnx,
                                                            quantize_openvino)
    convert_onnx('seg.onnx', 'seg.xml')                 # fp32 IR: seg.xml + seg.bin
    report = quantize_openvino('seg.onnx', 'seg_int8.xml', split='train')
    print(report)

What is done, and why:

- **Conversion** is OpenVINO's own ONNX reader (``Core.read_model``) and
  ``save_model(..., compress_to_fp16=False)``: the IR keeps fp32 weights (OpenVINO's
  default halves them to fp16, which would change the outputs of a model meant to
  match PyTorch). The exporter's metadata (``metadata_props``: task, preprocessing,
  classes, input size; see :mod:`.onnx_export`) is copied as the same strings into the
  IR's ``rt_info`` section ``mobilenet_tasks``, plus ``conversion`` (JSON), so
  :class:`~mobilenet_tasks.backends.BackendModel`, ``tools/test.py`` and the
  inferencer run the ``.xml`` like the ``.onnx``.
- **int8** is NNCF's ``nncf.quantize`` (OpenVINO's post-training quantization: min-max
  ranges of the activations on the calibration images, per-channel symmetric weights,
  then fast bias correction of the convolutions' biases for the shift rounding gives
  their outputs), which inserts ``FakeQuantize`` nodes; the CPU plugin runs the
  convolutions between them with integer kernels, and the saved weights are int8.
  Presets (:data:`~.options.OPENVINO_PRESETS`): ``mixed`` (default; asymmetric
  activations, as onnxruntime's path uses uint8 with a zero point: the hard-swish
  outputs are far from symmetric) or ``performance`` (symmetric activations).
- **Calibration** on dataset images preprocessed exactly as the config's test
  pipeline does (:func:`~.calibration.calibration_images`,
  :class:`~.calibration.ImageCalibrationReader`, as :func:`~.quantize.quantize_model`
  calibrates), by default the ``train`` split, so the evaluation images stay out.
- **Only the network is quantized**: the ops after the last convolutions (softmax,
  box decoding, TopK, NonMaxSuppression and the ``If`` around it, gathers, the sum
  and resize of the logits) are an ``nncf.IgnoredScope`` of names, found by the rule
  of :func:`~.onnx_graph.postprocessing_nodes` applied to the OpenVINO graph
  (:func:`postprocessing_ops`): ops that are not convolutions or MatMul and feed none.
  ``ignored_types`` adds OpenVINO op types (``Multiply``, ``GroupConvolution``...).
- An ONNX input goes through an IR file first: NNCF 3.4 fails on the NMS graph read
  straight from ONNX (its ``If`` bodies keep consumers outside the body, "Could not
  find a node ... in NNCFGraph"); saving the IR drops them.

Measured on the demo LR-ASPP (random weights damped as the tests do, 64x128, 3
calibration images): 109 FakeQuantize nodes; the CPU plugin runs 51 of the 66
convolutions in u8, the 15 depthwise ones in f32 on fake-quantized weights (NNCF keeps
their weights float behind a Reshape); 6.0 MB -> 2.7 MB; on a street scene not
calibrated on, a relative rms error of 0.04 of the logits (the rounding bound of the
tests: 0.13) and 97% argmax agreement with fp32.
"""
import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from mobilenet_tasks.backends import open_backend
from mobilenet_tasks.backends.base import decode_metadata, require
from mobilenet_tasks.backends.openvino import (all_ops, ir_op_counts,
                                               metadata_strings, read_model,
                                               set_rt_metadata)
from .calibration import ImageCalibrationReader, calibration_images
from .onnx_graph import QuantizationError
from .options import OPENVINO_PRESETS

PathLike = Union[str, os.PathLike]

#: OpenVINO op types that compute features: they and what feeds them are quantized.
COMPUTE_TYPES = ('Convolution', 'GroupConvolution', 'ConvolutionBackpropData',
                 'GroupConvolutionBackpropData', 'MatMul')
_NOT_OPS = ('Parameter', 'Constant', 'Result')


class OpenVINOExportError(ValueError):
    """A conversion asked wrongly (paths, file kind): the message says what to do."""


# -- files -------------------------------------------------------------------------
def _check_paths(src: str, out: str, suffixes: Sequence[str]) -> None:
    if not os.path.exists(src):
        raise FileNotFoundError(f'{src}: no such file; pass the .onnx file '
                                'tools/deployment/export_onnx.py wrote')
    if not src.lower().endswith(tuple(suffixes)):
        raise OpenVINOExportError(f'{src}: not a {" or ".join(suffixes)} file; pass '
                                  'the .onnx file tools/deployment/export_onnx.py '
                                  'wrote')
    if not out.lower().endswith('.xml'):
        raise OpenVINOExportError(f'{out}: an OpenVINO IR is an .xml file (its '
                                  'weights go in the .bin next to it); pass an '
                                  'output path ending in .xml')
    if os.path.abspath(out) == os.path.abspath(src):
        raise OpenVINOExportError(f'{out}: the output would overwrite the input '
                                  'model; pass another path')


def model_bytes(path: PathLike) -> int:
    """The size of a model on disk: an ``.onnx`` file, or an IR's ``.xml`` and
    ``.bin``."""
    weights = os.path.splitext(os.fspath(path))[0] + '.bin'
    extra = os.fspath(path).lower().endswith('.xml') and os.path.isfile(weights)
    return os.path.getsize(path) + (os.path.getsize(weights) if extra else 0)


def _version(module) -> str:
    return str(module.__version__).split('-')[0]


# -- conversion --------------------------------------------------------------------
def convert_onnx(onnx_path: PathLike, out_xml: PathLike) -> str:
    """Convert an exported ``.onnx`` to an OpenVINO IR (``out_xml`` and the ``.bin``
    next to it) with fp32 weights and the exporter's metadata in its ``rt_info``.

    Returns:
        str: ``out_xml``.

    Raises:
        FileNotFoundError: No such ``onnx_path``.
        OpenVINOExportError: Not an ``.onnx`` input, an output not ending in ``.xml``
            or equal to the input.
        BackendError: A file OpenVINO cannot read.
        RuntimeMissingError: OpenVINO is not installed.
    """
    onnx_path, out_xml = os.fspath(onnx_path), os.fspath(out_xml)
    _check_paths(onnx_path, out_xml, ('.onnx', ))
    ov = require('openvino', 'OpenVINO', 'openvino')
    model = read_model(onnx_path)
    strings = metadata_strings(onnx_path, model)
    if 'task' not in strings:
        warnings.warn(f'{onnx_path} holds no task metadata (not written by '
                      'export_onnx.py?): tools/test.py and the inferencer cannot run '
                      'the IR')
    strings['conversion'] = json.dumps(dict(
        tool='openvino.save_model', openvino=_version(ov), source=onnx_path,
        compress_to_fp16=False))
    set_rt_metadata(model, strings)
    Path(out_xml).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, out_xml, compress_to_fp16=False)
    return out_xml


# -- the graph ---------------------------------------------------------------------
def _unique_names(ov_model) -> None:
    """Give ops sharing a friendly name distinct ones: the ignored scope names ops."""
    seen = set()
    for op in all_ops(ov_model):
        name = op.get_friendly_name()
        while name in seen:
            name += '_'
        if name != op.get_friendly_name():
            op.set_friendly_name(name)
        seen.add(name)


def postprocessing_ops(ov_model) -> List[str]:
    """Friendly names of the ops after the network's last convolutions: not in
    :data:`COMPUTE_TYPES` and feeding none of them (the rule of
    :func:`~.onnx_graph.postprocessing_nodes`), and every op of their ``If``
    bodies."""
    ops = ov_model.get_ordered_ops()
    network = set()
    stack = [op for op in ops if op.get_type_name() in COMPUTE_TYPES]
    if not stack:
        raise QuantizationError('the model has no convolution or MatMul: nothing to '
                                'quantize')
    while stack:
        op = stack.pop()
        if op.get_friendly_name() in network:
            continue
        network.add(op.get_friendly_name())
        stack.extend(value.get_node() for value in op.input_values())
    names = []
    for op in ops:
        if op.get_friendly_name() in network or op.get_type_name() in _NOT_OPS:
            continue
        names.append(op.get_friendly_name())
        if op.get_type_name() == 'If':
            names += [inner.get_friendly_name() for i in range(2)
                      for inner in all_ops(op.get_function(i))
                      if inner.get_type_name() not in _NOT_OPS]
    return names


# -- int8 --------------------------------------------------------------------------
@dataclass
class OpenVINOQuantizeReport:
    """What :func:`quantize_openvino` did.

    Attributes:
        out_path (str): The int8 IR (``.xml``; weights in the ``.bin``).
        source_path (str): The fp32 model quantized.
        fp32_bytes, int8_bytes (int): Sizes on disk (an IR: ``.xml`` and ``.bin``).
        num_images (int): Calibration images used.
        source (str): Where they came from (a folder, or a split of the config).
        preset (str): NNCF preset.
        fake_quantize (int): FakeQuantize nodes of the saved IR.
        float_ops (int): Ops kept float on purpose (after the last convolutions).
        ignored_types (list[str]): OpenVINO op types kept float on request.
        op_counts (Counter): Op type -> layers of the saved IR.
        calibration_paths (list[str]): The calibration images.
    """
    out_path: str
    source_path: str
    fp32_bytes: int
    int8_bytes: int
    num_images: int
    source: str
    preset: str
    fake_quantize: int
    float_ops: int
    ignored_types: List[str] = field(default_factory=list)
    op_counts: Counter = field(default_factory=Counter)
    calibration_paths: List[str] = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        convs = sum(self.op_counts[t] for t in COMPUTE_TYPES)
        ignored = (f'; op types kept float: {", ".join(self.ignored_types)}'
                   if self.ignored_types else '')
        return (f'int8 OpenVINO model: {self.out_path}\n'
                f'  calibration: {self.num_images} images from {self.source}, NNCF '
                f'preset {self.preset}\n'
                f'  FakeQuantize nodes: {self.fake_quantize} (around {convs} '
                'convolutions / MatMul)\n'
                f'  float: {self.float_ops} ops after the last convolutions, kept '
                f'float on purpose{ignored}\n'
                f'  size: {self.fp32_bytes / 1e6:.2f} MB fp32 -> '
                f'{self.int8_bytes / 1e6:.2f} MB int8 '
                f'({self.fp32_bytes / max(self.int8_bytes, 1):.2f}x smaller)')


@contextlib.contextmanager
def _quiet_nncf(nncf):
    """NNCF's INFO log (a line per op it leaves out) and progress bars, off."""
    from nncf.common.logging import nncf_logger
    level = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        nncf.set_log_level(level)


def _input_spec(ov_model, path: str):
    if len(ov_model.inputs) != 1:
        raise QuantizationError(f'{path} has {len(ov_model.inputs)} inputs; expected '
                                'one image batch N x 3 x H x W, as export_onnx.py '
                                'writes')
    port = ov_model.inputs[0]
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic or len(shape) != 4:
        raise QuantizationError(f'{path}: input {port.get_any_name()} has shape '
                                f'{shape}; expected N x 3 x H x W')
    size = tuple(d.get_length() if d.is_static else None for d in list(shape)[2:])
    return port.get_any_name(), (size if None not in size else None)


def _config(model_path: str, meta: dict, config):
    """``config``, else the config file the model's metadata names."""
    if config is None:
        config = meta.get('config')
        if not config or not os.path.isfile(config):
            raise QuantizationError(
                f'{model_path} names no config file that exists here ({config!r}); '
                'pass the config it was exported from (its test preprocessing is '
                'needed)')
    return config


def preprocessed_images(model_path: PathLike, paths: Sequence[str], config=None
                        ) -> List[np.ndarray]:
    """Image files preprocessed for a model as its config's test pipeline does (the
    calibration's preprocessing; ``config`` default: the one in its metadata)."""
    model_path = os.fspath(model_path)
    model = read_model(model_path)
    meta = decode_metadata(metadata_strings(model_path, model))
    input_name, input_size = _input_spec(model, model_path)
    return ImageCalibrationReader(paths, _config(model_path, meta, config),
                                  input_name, input_size, meta.get('task')).batches


def quantize_openvino(model_path: PathLike,
                      out_xml: PathLike,
                      config=None,
                      images: Union[PathLike, Sequence[PathLike], None] = None,
                      split: str = 'train',
                      num_images: Optional[int] = 32,
                      preset: str = 'mixed',
                      ignored_types: Sequence[str] = (),
                      fast_bias_correction: bool = True) -> OpenVINOQuantizeReport:
    """Quantize an exported fp32 model (``.onnx`` or its fp32 ``.xml``) to an int8
    OpenVINO IR with NNCF (see the module docstring).

    Args:
        model_path (str): The fp32 ``.onnx`` (export_onnx.py) or ``.xml``
            (:func:`convert_onnx`).
        out_xml (str): The int8 IR to write (and its ``.bin``; the folder is made).
        config (str | Config, optional): The config the model was exported from (its
            test preprocessing, and its dataset unless ``images``). Default: the
            ``config`` in the model's metadata.
        images: Calibration images: a folder (recursive) or a list of files. None:
            the config's ``split``.
        split (str): Split of the config's dataset to calibrate on (default
            ``'train'``, not the evaluation images).
        num_images (int, optional): Calibration images, evenly spaced over what is
            found (default 32; None: all).
        preset (str): ``'mixed'`` (default) or ``'performance'``.
        ignored_types (Sequence[str]): OpenVINO op types to keep float too.
        fast_bias_correction (bool): NNCF's fast bias correction (default); False:
            its full BiasCorrection, which NNCF 3.4 cannot run on a graph with ``If``
            (the detection graph with NMS).

    Returns:
        OpenVINOQuantizeReport

    Raises:
        FileNotFoundError: No such ``model_path``.
        OpenVINOExportError: Wrong paths (see :func:`convert_onnx`).
        QuantizationError: Already quantized, no config, an input of another size than
            the config's preprocessing gives, an unknown op type, nothing quantized.
        InputError: No calibration images.
        RuntimeMissingError: OpenVINO or NNCF is not installed.
    """
    if preset not in OPENVINO_PRESETS:
        raise ValueError(f'preset must be one of {OPENVINO_PRESETS}, got {preset!r}')
    model_path, out_xml = os.fspath(model_path), os.fspath(out_xml)
    _check_paths(model_path, out_xml, ('.onnx', '.xml'))
    ov = require('openvino', 'OpenVINO', 'openvino')
    nncf = require('nncf', 'NNCF', 'nncf')
    core = ov.Core()
    model = read_model(model_path, core)
    types = Counter(op.get_type_name() for op in all_ops(model))
    if types['FakeQuantize']:
        raise QuantizationError(f'{model_path}: already quantized (it holds '
                                f'{types["FakeQuantize"]} FakeQuantize nodes); pass '
                                'the fp32 model')
    unknown = sorted(set(ignored_types) - set(types))
    if unknown:
        raise QuantizationError(
            f'ignored_types {unknown}: no op of the model has that OpenVINO type '
            f'(ONNX names such as Conv are Convolution here); its types: '
            f'{", ".join(sorted(set(types) - set(_NOT_OPS)))}')
    if types['If'] and not fast_bias_correction:
        raise QuantizationError(f'{model_path} holds an If (the NMS of the detection '
                                "graph): NNCF's full bias correction cannot run on it; "
                                'use fast bias correction or the graph exported '
                                'with --no-nms')
    strings = metadata_strings(model_path, model)
    meta = decode_metadata(strings)
    config = _config(model_path, meta, config)
    input_name, input_size = _input_spec(model, model_path)
    paths, source = calibration_images(config, images, split, num_images)
    reader = ImageCalibrationReader(paths, config, input_name, input_size,
                                    meta.get('task'))

    with tempfile.TemporaryDirectory(prefix='mobilenet_tasks_ov_') as tmp:
        if model_path.lower().endswith('.onnx'):  # see the module docstring
            ov.save_model(model, os.path.join(tmp, 'fp32.xml'), compress_to_fp16=False)
            model = core.read_model(os.path.join(tmp, 'fp32.xml'))
        _unique_names(model)
        excluded = postprocessing_ops(model)
        scope = nncf.IgnoredScope(names=excluded, types=list(ignored_types),
                                  validate=False)
        with _quiet_nncf(nncf):
            quantized = nncf.quantize(
                model, nncf.Dataset(reader.batches),
                preset=getattr(nncf.QuantizationPreset, preset.upper()),
                subset_size=len(reader), fast_bias_correction=fast_bias_correction,
                ignored_scope=scope)
        strings['quantization'] = json.dumps(dict(
            tool='nncf.quantize', nncf=_version(nncf), openvino=_version(ov),
            preset=preset, calibration_images=len(reader),
            calibration_source=source, source=model_path,
            ignored_types=list(ignored_types), float_ops=len(excluded),
            fast_bias_correction=fast_bias_correction))
        set_rt_metadata(quantized, strings)
        Path(out_xml).parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, out_xml, compress_to_fp16=False)
    counts = ir_op_counts(out_xml)
    if not counts['FakeQuantize']:
        for path in (out_xml, os.path.splitext(out_xml)[0] + '.bin'):
            if os.path.exists(path):
                os.remove(path)
        raise QuantizationError(f'{model_path}: NNCF quantized nothing (no '
                                'FakeQuantize node); do ignored_types '
                                f'{list(ignored_types)} cover every convolution?')
    return OpenVINOQuantizeReport(
        out_path=out_xml, source_path=model_path, fp32_bytes=model_bytes(model_path),
        int8_bytes=model_bytes(out_xml), num_images=len(reader), source=source,
        preset=preset, fake_quantize=counts['FakeQuantize'], float_ops=len(excluded),
        ignored_types=list(ignored_types), op_counts=counts,
        calibration_paths=list(paths))


# -- parity --------------------------------------------------------------------------
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``x1 y1 x2 y2`` boxes."""
    inter = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) -
                    np.maximum(a[:, None, :2], b[None, :, :2]), 0, None).prod(-1)
    area_a, area_b = ((x[:, 2:] - x[:, :2]).clip(0).prod(-1) for x in (a, b))
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def _compare_batch(ref: list, got: list, names: list, meta: dict) -> dict:
    """One input's outputs compared (see :func:`compare_backends`)."""
    from .parity import _match_detections
    report = {}
    if meta.get('task') == 'detection' and meta.get('nms', False):
        counts = (len(ref[1]), len(got[1]))
        iou = _iou(ref[0], got[0]) * (ref[2][:, None] == got[2][None])
        order = _match_detections(ref, got) if counts[0] == counts[1] else None
        report.update(num_detections=counts, labels_equal=order is not None,
                      tied_scores=bool(np.unique(ref[1]).size < ref[1].size),
                      matched=float((iou.max(1, initial=0) >= 0.5).mean())
                      if counts[0] else 1.0)
        if order is None:
            return dict(report, max_abs_diff=float('inf'), rel_diff=float('inf'),
                        scale=float(np.abs(ref[0]).max(initial=0.0)))
        ref, got = ref[:2], [g[order] for g in got[:2]]
    for r, g, name in zip(ref, got, names):
        if r.shape != g.shape:
            raise ValueError(f'OpenVINO gave {name} of shape {g.shape}, the reference '
                             f'{r.shape}')
    diff = max(float(np.abs(g.astype(np.float64) - r).max(initial=0.0))
               for r, g in zip(ref, got))
    scale = max(float(np.abs(r).max(initial=0.0)) for r in ref)
    report.update(max_abs_diff=diff, scale=scale, rel_diff=diff / max(scale, 1.0))
    if meta.get('task') == 'segmentation':
        report['argmax_agreement'] = float((ref[0].argmax(1) ==
                                            got[0].argmax(1)).mean())
    return report


def _merge(reports: List[dict]) -> dict:
    """Reports of several inputs as one: the worst differences, the mean agreement,
    the detections summed."""
    out = {}
    for key in reports[0]:
        values = [r[key] for r in reports]
        out[key] = (float(np.mean(values)) if key in ('argmax_agreement', 'matched')
                    else tuple(int(v) for v in np.sum(values, axis=0))
                    if key == 'num_detections' else all(values)
                    if key == 'labels_equal' else any(values)
                    if key == 'tied_scores' else max(values))
    return out


def compare_backends(reference: PathLike, model: PathLike, seed: int = 0,
                     threads: Optional[int] = None,
                     batches: Optional[Sequence[np.ndarray]] = None) -> dict:
    """Run ``model`` (OpenVINO) and ``reference`` (its runtime: onnxruntime for an
    ``.onnx``) on the same inputs and compare their outputs.

    Args:
        reference, model (str): The two model files.
        seed (int): Seed of the default input, one standard normal batch (what
            ``(x - mean) / std`` of an image roughly gives).
        threads (int, optional): Both runtimes' threads.
        batches (Sequence[np.ndarray], optional): Preprocessed inputs instead
            (:func:`preprocessed_images`).

    Returns:
        dict: ``max_abs_diff`` (every output; the detection graph with NMS: boxes and
        scores of the detections paired up), ``scale`` (max abs reference value),
        ``rel_diff`` (their ratio, the scale floored at 1; ``inf`` if detections do
        not pair up), ``names``, ``inputs``; segmentation: ``argmax_agreement``;
        detection with NMS: ``num_detections`` (reference, model), ``labels_equal``
        (paired one to one with equal labels and scores within 1e-4),
        ``tied_scores`` (the reference's scores hold ties, which NMS resolves
        arbitrarily), ``matched`` (fraction of the reference's detections the model
        finds with the same label at IoU >= 0.5: int8 fidelity). Over several
        inputs: the largest differences, the mean fractions.
    """
    ref_backend = open_backend(reference, threads=threads)
    got_backend = open_backend(model, backend='openvino', threads=threads)
    meta = got_backend.metadata
    names = ref_backend.output_names
    if got_backend.output_names != names:
        raise ValueError(f'{model} has outputs {got_backend.output_names}, '
                         f'{reference} {names}: not the same model')
    if batches is None:
        size = got_backend.fixed_size or tuple(meta.get('input_size') or ())
        if len(size) != 2:
            raise ValueError(f'{model}: a dynamic input and no input_size in its '
                             'metadata; cannot choose an input')
        batches = [np.random.default_rng(seed).standard_normal(
            (1, 3, *size)).astype(np.float32)]
    reports = [_compare_batch(ref_backend.run(b), got_backend.run(b, names), names,
                              meta) for b in batches]
    return dict(_merge(reports), names=names, inputs=len(reports))
