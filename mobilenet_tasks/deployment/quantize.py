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
import contextlib
import io
import json
import os
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from mobilenet_tasks.apis.inputs import InputError, is_image_file, read_image
from .onnx_export import NonStandardOpError, check_standard_ops

PathLike = Union[str, os.PathLike]

#: Calibration methods (name -> onnxruntime ``CalibrationMethod`` member name).
METHODS = {'minmax': 'MinMax', 'percentile': 'Percentile', 'entropy': 'Entropy'}
#: Activation types (name -> onnxruntime ``QuantType`` member name).
ACTIVATION_TYPES = {'uint8': 'QUInt8', 'int8': 'QInt8'}
#: Operators that compute features: they and everything feeding them are quantized.
COMPUTE_OPS = ('Conv', 'ConvTranspose', 'Gemm', 'MatMul')
#: Percentile of ``|x|`` the ``percentile`` method keeps.
PERCENTILE = 99.99
#: Histogram bins of the ``entropy`` method (the range searched for the threshold).
ENTROPY_BINS = 2048
SPLITS = ('train', 'val', 'test')


class QuantizationError(ValueError):
    """The model cannot be quantized as asked: the message says why and what to do."""


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


# -- calibration images ------------------------------------------------------------
def _spread(paths: Sequence[str], num: Optional[int]) -> List[str]:
    """``num`` paths evenly spaced over ``paths`` (all of them if fewer or None)."""
    if num is None or len(paths) <= num:
        return list(paths)
    idx = np.unique(np.linspace(0, len(paths) - 1, num).round().astype(int))
    return [paths[i] for i in idx]


def _folder_images(folder: PathLike) -> List[str]:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f'{folder}: no such folder of calibration images; check the '
                         'path')
    if not folder.is_dir():
        raise InputError(f'{folder}: not a folder; pass a folder of calibration images')
    images = sorted(str(p) for p in folder.rglob('*') if p.is_file()
                    and is_image_file(p))
    if not images:
        raise InputError(f'{folder}: no images in it or its subfolders; calibration '
                         'needs images of the kind the model will see (e.g. '
                         'leftImg8bit/val of the dataset)')
    return images


def _split_images(cfg, split: str) -> List[str]:
    """The image files of a split of the config's dataset, as the dataset lists them."""
    from mmengine.registry import DATASETS, init_default_scope

    from mobilenet_tasks.datasets.checks import check_data_files
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    loader = f'{split}_dataloader'
    if not isinstance(cfg.get(loader), dict) or 'dataset' not in cfg[loader]:
        raise QuantizationError(f'the config has no {loader}.dataset to take '
                                'calibration images from; pass a folder of images')
    check_data_files(cfg, loaders=(loader, ))
    init_default_scope(cfg.get('default_scope', 'mobilenet_tasks'))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        dataset = DATASETS.build(cfg[loader]['dataset'])
    paths = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        path = info.get('img_path')
        if path is None:
            raise QuantizationError(f'{type(dataset).__name__} gives no img_path for '
                                    'its images; pass a folder of images')
        paths.append(path)
    if not paths:
        raise InputError(f'the {split} split of the config lists no images; pass a '
                         'folder of images')
    return paths


def calibration_images(config=None, images: Union[PathLike, Sequence[PathLike],
                                                  None] = None,
                       split: str = 'train', num_images: Optional[int] = 32
                       ) -> Tuple[List[str], str]:
    """``(image paths, description of their source)``.

    Args:
        config (str | Config): The model's config (for ``split``).
        images: A folder (searched recursively: the Cityscapes layout has city
            folders) or a list of image files. None: the config's ``split``.
        split (str): ``'train'``, ``'val'`` or ``'test'``: the dataset of
            ``{split}_dataloader``.
        num_images (int, optional): At most this many, evenly spaced over what was
            found (deterministic, and over the whole split rather than its first
            city). None: all.

    Raises:
        InputError: A missing folder or file, a folder without images.
        DatasetNotFoundError: The config's dataset is not on disk.
    """
    if num_images is not None and num_images < 1:
        raise ValueError(f'num_images must be at least 1, got {num_images}')
    if images is not None:
        if isinstance(images, (str, os.PathLike)):
            paths, source = _folder_images(images), f'folder {images}'
        else:
            paths = [os.fspath(p) for p in images]
            if not paths:
                raise InputError('the list of calibration images is empty')
            for p in paths:
                if not os.path.isfile(p):
                    raise InputError(f'{p}: no such image file; check the path')
            source = f'{len(paths)} given files'
    else:
        if config is None:
            raise ValueError('pass a config (its dataset gives calibration images) or '
                             'images')
        from mobilenet_tasks.utils.config import load_config
        cfg = load_config(config)
        paths = _split_images(cfg, split)
        name = config if isinstance(config, str) else (cfg.filename or 'the config')
        source = f'the {split} split of {name}'
    return _spread(paths, num_images), source


def _task(model) -> str:
    from mmdet.models.detectors import BaseDetector
    return 'detection' if isinstance(model, BaseDetector) else 'segmentation'


class ImageCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over image files, preprocessed as the
    inferencer preprocesses them (one image a batch).

    All images are read and preprocessed when the reader is made, so a wrong image or a
    size the model does not take fails at once, naming the file, before any
    calibration runs.

    Args:
        image_paths (Sequence[str]): Image files.
        config (str | Config): The model's config (test pipeline, data preprocessor).
        input_name (str): The ONNX model's input.
        input_size (tuple[int, int], optional): ``(H, W)`` of a static model: every
            preprocessed image must have it. None: any size (dynamic model).
        task (str, optional): The ONNX model's task (its metadata), checked against
            the config's.

    Raises:
        QuantizationError: A preprocessed size other than ``input_size``, or a config
            of another task.
        InputError: An image that cannot be read.
    """

    def __init__(self, image_paths: Sequence[str], config, input_name: str = 'input',
                 input_size: Optional[Sequence[int]] = None,
                 task: Optional[str] = None):
        from mobilenet_tasks.apis.preprocess import Preprocessor
        from mobilenet_tasks.utils.config import build_model, load_config
        cfg = load_config(config)
        model = build_model(cfg, init_weights=False)  # only its data preprocessor
        config_task = _task(model)
        if task is not None and task != config_task:
            raise QuantizationError(f'the ONNX model is a {task} model but the config '
                                    f'a {config_task} one; pass the config it was '
                                    'exported from')
        preprocess = Preprocessor(cfg, model, config_task)
        self.input_name = input_name
        self.batches: List[np.ndarray] = []
        for path in image_paths:
            for _, batch, _ in preprocess([read_image(path)]):
                array = batch.cpu().numpy().astype(np.float32)
                size = tuple(array.shape[2:])
                if input_size is not None and size != tuple(input_size):
                    raise QuantizationError(
                        f'{path}: the config\'s test preprocessing gives a '
                        f'{size[0]}x{size[1]} input, but the ONNX model was exported '
                        f'for {input_size[0]}x{input_size[1]} only (static shape). '
                        f'Export it at that size (export_onnx.py --shape {size[0]} '
                        f'{size[1]}) or with --dynamic, or pass the config whose test '
                        'resize gives the exported size.')
                self.batches.append(array)
        self._next = 0

    def __len__(self) -> int:
        return len(self.batches)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return {self.input_name: self.batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self):
        self.rewind()
        return iter(lambda: self.get_next(), None)


def _as_ort_reader(reader: ImageCalibrationReader):
    """``reader`` as a subclass instance of onnxruntime's ``CalibrationDataReader``
    (an ABC whose import is kept out of module import time)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):

        def get_next(self):
            return reader.get_next()

        def rewind(self):
            reader.rewind()

    return _Reader()


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


def calibrate(model, reader: 'ImageCalibrationReader', cache_path: str, method: str,
              percentile: float, tmp_dir: str) -> None:
    """Calibrate ``model`` (a ModelProto) on the reader's images with onnxruntime's
    calibrator for ``method`` and write the tensor ranges to ``cache_path``, in the
    format ``quantize_static(calibration_cache_path=...)`` reads."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    path = os.path.join(tmp_dir, 'calibration_model.onnx')
    onnx.save(model, path)
    options = {}
    if method == 'percentile':
        options = {'percentile': float(percentile), 'symmetric': True}
    elif method == 'entropy':
        # onnxruntime's defaults (128 bins, 128 quantized bins) leave the entropy
        # search a single candidate, the full range: minmax under another name.
        # 2048 bins as TensorRT's entropy calibrator.
        options = {'num_bins': ENTROPY_BINS, 'num_quantized_bins': 128}
    # the operators quantize_static calibrates by default
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(
        path, op_types, augmented_model_path=os.path.join(tmp_dir, 'augmented.onnx'),
        calibrate_method=getattr(CalibrationMethod, METHODS[method]),
        extra_options=options)
    reader.rewind()
    with contextlib.redirect_stdout(io.StringIO()):  # histogram progress messages
        calibrator.collect_data(_as_ort_reader(reader))
        ranges = calibrator.compute_data()
    del calibrator
    save_tensors_data(ranges, cache_path)


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
    from .ort_model import cpu_session
    session = cpu_session(path)
    name = session.get_inputs()[0].name
    out = session.get_outputs()[output].name
    return [session.run([out], {name: b})[0] for b in batches]
