"""Post-training static int8 quantization of the exported ONNX models with
onnxruntime (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018: weights and activations as 8-bit
integers with a scale and a zero point, activation ranges calibrated on
representative images; BN is already folded into the convolutions by the export).

    from mobilenet_tasks.deployment.quantize import quantize_model
    report = quantize_model('seg_fp32.onnx', 'seg_int8.onnx',
                            config='configs/lraspp_v3_large_demo.py', split='train')
    print(report)

What is done, and why:

- **Format QDQ** (``QuantizeLinear`` / ``DequantizeLinear`` pairs around float
  operators), the format onnxruntime recommends: the file holds only standard ONNX
  operators (checked with :func:`~mobilenet_tasks.deployment.onnx_export.
  check_standard_ops`; 8-bit types need no ``com.microsoft`` ops), and onnxruntime
  fuses ``DQ -> Conv -> Q`` into integer kernels (``QLinearConv``...) when it loads
  the model.
- **Types**: weights signed int8, symmetric, **per output channel** by default (a
  depthwise convolution's filters differ in range by orders of magnitude); activations
  **uint8 with a zero point** by default, as in the paper. Not int8: onnxruntime 1.31's
  x86 CPU provider fuses only 32 of the 66 convolutions of LR-ASPP into
  ``QLinearConv`` with int8 activations (the rest run in float between conversions,
  2x slower), all 66 with uint8.
- **Calibration** on images of the dataset, preprocessed exactly as the inferencer
  does (:class:`mobilenet_tasks.apis.preprocess.Preprocessor`: the config's test
  resize, BGR->RGB, ``(x - mean) / std``), so the activation ranges are those the
  model sees at test time. Images come from a folder or from a split of the config's
  dataset (the dataset is built, so exactly the images its loader lists, evenly
  spaced over the split when it holds more than ``num_images``). The default split is
  ``train``: it keeps the calibration images out of the evaluation, and on the demo
  models it also calibrated better than ``val`` (see the measurements below).
- **Methods**: ``minmax`` (the observed range, the paper's; the default),
  ``percentile`` (the given percentile of ``|x|``, default 99.99, clipped to the
  observed range) and ``entropy`` (KL divergence, over 2048 histogram bins: with
  onnxruntime's default of 128 bins the search has a single candidate and gives the
  min/max range). The last two hold every calibrated tensor of every image in memory
  (about 50 MB an image for LR-ASPP at 256x512), and ``entropy`` takes minutes.
- **Only the network is quantized**: the nodes that are convolutions (or MatMul /
  Gemm) or that feed one, i.e. the backbone, neck and heads up to their last
  convolutions (:func:`postprocessing_nodes`). What comes after turns features into
  outputs (a detector's softmax, box decoding, TopK / NMS and gathers; a segmentor's
  sum of the two classifiers and the resize of the logits to the input) and stays
  float: 8-bit scores or coordinates would cost accuracy for little time. The rule
  needs no node names or patterns, so it holds for the segmentation graph and both
  detection graphs (NMS in the graph, or raw head outputs). Calibration runs on the
  network alone (:func:`network_model`).
- **Pre-processing** with onnxruntime's ``quant_pre_process`` (ONNX shape inference,
  basic graph optimisation), as onnxruntime advises.
- The fp32 model's ``metadata_props`` (preprocessing, classes, input size) are copied,
  plus ``quantization`` (JSON: format, types, per-channel, method, number and source
  of the calibration images, nodes kept float), so ``tools/test.py CONFIG int8.onnx``
  and the inferencer run the int8 model like the fp32 one.

Measured on the demo models (``tools/test.py``; 32 calibration images, 20 for the
segmentation val split, which has only 20):

==============================  ============  ===========
model                           LR-ASPP mIoU  SSDLite mAP
==============================  ============  ===========
fp32 (PyTorch and ONNX)         65.28         0.128
int8 minmax, val                64.80         0.070
int8 minmax, train              65.07         0.108
int8 percentile 99.99, train    65.00         0.109
int8 percentile 99.9, train     63.82         0.130
int8 entropy, train             62.25         0.129
int8 minmax per tensor, train   65.15         0.104
==============================  ============  ===========

The demo detector, trained from scratch for 800 iterations, has activation outliers
in the last backbone blocks (single tensors lose 40-50% of their signal to rounding
with min/max ranges); clipping them (percentile 99.9, entropy) recovers its mAP,
while the segmentor prefers the full range (entropy costs it 3 points). Files are
3.2x (LR-ASPP) and 3.4x (SSDLite) smaller; with onnxruntime 1.31 on this x86 CPU
(one thread) the int8 models are not faster: the int8 convolutions take as long as
the float ones (20.7 vs 20.8 ms for LR-ASPP at 256x512), and the conversions around
the float HardSigmoid of the hard-swish come on top.
"""
import json
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np

from mobilenet_tasks.backends import open_backend
from .calibration import (METHODS, ImageCalibrationReader, calibrate,
                          calibration_images)
from .onnx_graph import (QuantizationError, _drop_unused_opsets, _name_nodes,
                         input_spec, load_onnx, network_model, op_counts,
                         postprocessing_nodes)
from .onnx_export import NonStandardOpError, check_standard_ops
from .options import ACTIVATION_TYPES, PERCENTILE

PathLike = Union[str, os.PathLike]



@dataclass
class QuantizeReport:
    """What :func:`quantize_model` did.

    Attributes:
        out_path (str): The int8 model.
        fp32_bytes, int8_bytes (int): File sizes.
        num_images (int): Calibration images used.
        source (str): Where they came from (a folder, or a split of the config).
        method (str): Calibration method.
        per_channel (bool): Per-channel weights.
        quantized_ops (Counter): Op type -> nodes between int8 tensors (QDQ groups,
            see :func:`op_counts`).
        float_ops (Counter): Op type -> nodes that read or write float tensors (the
            post-processing kept float).
        excluded (list[str]): Names of the nodes kept float on purpose (after the
            network's last convolutions).
    """
    out_path: str
    fp32_bytes: int
    int8_bytes: int
    num_images: int
    source: str
    method: str
    per_channel: bool
    quantized_ops: Counter = field(default_factory=Counter)
    float_ops: Counter = field(default_factory=Counter)
    excluded: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        def ops(counter):
            return ', '.join(f'{k} {v}' for k, v in sorted(counter.items())) or 'none'
        per = 'channel' if self.per_channel else 'tensor'
        return (f'int8 model: {self.out_path}\n'
                f'  calibration: {self.num_images} images from {self.source}, '
                f'{self.method}, weights per {per}'
                f'\n  quantized nodes (int8 in and out): {ops(self.quantized_ops)}\n'
                f'  float nodes: {ops(self.float_ops)} ({len(self.excluded)} after the '
                'last convolutions, kept float on purpose)\n'
                f'  size: {self.fp32_bytes / 1e6:.2f} MB fp32 -> '
                f'{self.int8_bytes / 1e6:.2f} MB int8 '
                f'({self.fp32_bytes / max(self.int8_bytes, 1):.2f}x smaller)')


def _pre_process(src: str, dst: str):
    """onnxruntime's ``quant_pre_process`` (ONNX shape inference and basic graph
    optimisation) into ``dst``; the model, or None (with a warning) if it failed.

    Its symbolic shape inference is skipped: it exists for dynamic transformer
    shapes, and fails on the ``If`` of the detection graph's NMS (an assertion in
    onnxruntime 1.31's ``_infer_If``); ONNX's own shape inference gives every shape
    of our static graphs.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process
    try:
        quant_pre_process(src, dst, skip_symbolic_shape=True)
    except Exception as e:  # noqa: BLE001 (onnxruntime raises assertions too)
        warnings.warn(f'{src}: onnxruntime\'s quant_pre_process failed '
                      f'({type(e).__name__}: {e}); quantizing the model as exported')
        return None
    return onnx.load(dst)


# -- quantization ------------------------------------------------------------------
def quantize_model(fp32_path: PathLike,
                   out_path: PathLike,
                   config=None,
                   images: Union[PathLike, Sequence[PathLike], None] = None,
                   split: str = 'train',
                   num_images: Optional[int] = 32,
                   method: str = 'minmax',
                   per_channel: bool = True,
                   preprocess: bool = True,
                   keep_postprocessing_float: bool = True,
                   activation_type: str = 'uint8',
                   reduce_range: bool = False,
                   percentile: float = PERCENTILE) -> QuantizeReport:
    """Quantize an exported fp32 ONNX model to int8 (QDQ, standard operators only).

    Args:
        fp32_path (str): The model ``export_onnx.py`` wrote.
        out_path (str): The int8 model to write (its folder is created).
        config (str | Config, optional): The config the model was exported from (its
            test preprocessing, and its dataset unless ``images``). Default: the
            ``config`` in the model's metadata.
        images: Calibration images: a folder (recursive) or a list of files. None:
            the config's ``split``.
        split (str): Split of the config's dataset to calibrate on. Default
            ``'train'``: calibrating on the images the model is then evaluated on
            would flatter it (and measured worse on the demo models: MinMax on val
            gave mAP 0.070 / mIoU 64.80, on train 0.108 / 65.07).
        num_images (int, optional): Calibration images (evenly spaced over what is
            found). Default 32. None: all.
        method (str): ``'minmax'`` (default), ``'percentile'`` or ``'entropy'``.
        per_channel (bool): Per-channel weight scales (default); False: one scale a
            tensor.
        preprocess (bool): Run onnxruntime's ``quant_pre_process`` first.
        keep_postprocessing_float (bool): Leave the nodes after the last
            convolutions float (default; see the module docstring). False quantizes
            every operator onnxruntime can (and calibrates the whole graph, which the
            histogram methods cannot do on a graph with NMS).
        activation_type (str): ``'uint8'`` (default, asymmetric, what onnxruntime's
            x86 integer kernels take) or ``'int8'``.
        reduce_range (bool): 7-bit weights, for x86 CPUs without VNNI (their 8-bit
            multiply-adds can overflow 16-bit intermediate sums).
        percentile (float): The percentile of ``|x|`` the ``'percentile'`` method
            keeps. Default :data:`PERCENTILE`.

    Returns:
        QuantizeReport

    Raises:
        FileNotFoundError: ``fp32_path`` is missing.
        QuantizationError: Not an ONNX model, already quantized, an input of another
            size than the config's preprocessing gives, a non-standard result.
        InputError: No calibration images.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from .onnx_export import read_metadata
    if method not in METHODS:
        raise ValueError(f'method must be one of {sorted(METHODS)}, got {method!r}')
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f'activation_type must be one of {sorted(ACTIVATION_TYPES)}, '
                         f'got {activation_type!r}')
    fp32_path, out_path = os.fspath(fp32_path), os.fspath(out_path)
    fp32 = load_onnx(fp32_path)
    if os.path.abspath(out_path) == os.path.abspath(fp32_path):
        raise QuantizationError(f'{out_path}: the output would overwrite the fp32 '
                                'model; pass another path')
    meta = read_metadata(fp32)
    if config is None:
        config = meta.get('config')
        if not config or not os.path.isfile(config):
            raise QuantizationError(
                f'{fp32_path} names no config file that exists here ({config!r}); pass '
                'the config it was exported from (its test preprocessing is needed)')
    input_name, input_size = input_spec(fp32)
    paths, source = calibration_images(config, images, split, num_images)
    reader = ImageCalibrationReader(paths, config, input_name, input_size,
                                    meta.get('task'))

    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='mobilenet_tasks_quant_') as tmp:
        src = os.path.join(tmp, 'fp32.onnx')
        model = _pre_process(fp32_path, src) if preprocess else None
        if model is None:
            model = onnx.load(fp32_path)
        _name_nodes(model)
        _drop_unused_opsets(model)
        onnx.save(model, src)
        excluded = postprocessing_nodes(model) if keep_postprocessing_float else []
        calib_method = getattr(CalibrationMethod, METHODS[method])
        cache = os.path.join(tmp, 'calibration.json')
        calibrate(network_model(model, excluded), reader, cache, method, percentile,
                  tmp)
        quantize_static(
            src, out_path, None,
            calibration_cache_path=cache,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=getattr(QuantType, ACTIVATION_TYPES[activation_type]),
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            nodes_to_exclude=excluded,
            calibrate_method=calib_method,
            extra_options={'ActivationSymmetric': False, 'WeightSymmetric': True})

    int8 = onnx.load(out_path)
    _drop_unused_opsets(int8)
    try:
        check_standard_ops(int8)
    except NonStandardOpError as e:
        os.remove(out_path)
        raise QuantizationError(f'the quantized model is not standard ONNX: {e}') from e
    info = dict(format='QDQ', activation_type=activation_type, weight_type='int8',
                per_channel=per_channel, reduce_range=reduce_range, method=method,
                calibration_images=len(reader),
                calibration_source=source, float_nodes=len(excluded),
                preprocessed=preprocess,
                tool='onnxruntime.quantization.quantize_static',
                onnxruntime=onnxruntime.__version__)
    if method == 'percentile':
        info['percentile'] = float(percentile)
    del int8.metadata_props[:]
    for prop in fp32.metadata_props:
        if prop.key != 'quantization':
            int8.metadata_props.add(key=prop.key, value=prop.value)
    int8.metadata_props.add(key='quantization', value=json.dumps(info))
    int8.producer_name = fp32.producer_name or 'mobilenet_tasks'
    onnx.save(int8, out_path)
    quantized, floating = op_counts(int8)
    return QuantizeReport(out_path=out_path, fp32_bytes=os.path.getsize(fp32_path),
                          int8_bytes=os.path.getsize(out_path), num_images=len(reader),
                          source=source, method=method, per_channel=per_channel,
                          quantized_ops=quantized, float_ops=floating,
                          excluded=excluded)


def run_onnx(path: PathLike, batches: Iterable[np.ndarray], output: int = 0
             ) -> List[np.ndarray]:
    """Run a model (onnxruntime, CPU) on preprocessed batches; one output each."""
    runtime = open_backend(path, backend='onnxruntime')
    out = runtime.output_names[output]
    return [runtime.run(b, [out])[0] for b in batches]
