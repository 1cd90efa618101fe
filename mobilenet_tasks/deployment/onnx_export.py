"""ONNX export of the segmentation models with standard ONNX operators only.

The exported graph is the segmentor's ``encode_decode`` path (backbone -> decode head
-> bilinear resize of the logits to the input size), nothing more:

- **Input** ``input``: a float32 ``N x 3 x H x W`` image *already preprocessed* the way
  the model's ``SegDataPreProcessor`` does it: channels swapped BGR -> RGB if
  ``bgr_to_rgb``, then ``(x - mean) / std``. Resizing to the test size and that
  normalisation are done outside the graph (``mobilenet_tasks.apis.preprocess``
  does exactly that on arrays); the values needed are stored in the model's
  ``metadata_props`` (see :func:`read_metadata`).
- **Output** ``logits``: float32 ``N x num_classes x H x W``, the logits at the input
  size (argmax over the channels gives the label map ``predict`` gives).

Exporter: the legacy TorchScript exporter, ``torch.onnx.export(..., dynamo=False)``.
With torch 2.14 ``torch.onnx.export`` defaults to the dynamo (``torch.export``)
exporter, which needs the ``onnxscript`` package; it is not installed here, and the
TorchScript exporter needs nothing more than ``onnx``. It gives only default-domain
operators for these models (Conv, BatchNorm folded into Conv in eval, HardSigmoid /
HardSwish or their decomposition, AveragePool / GlobalAveragePool, Sigmoid, Mul, Add,
Resize), opset 17 by default. Both LR-ASPP gates export: the paper's 49x49 average
pool with stride (16, 20) (``AveragePool``; the pooled map is resized back with
``Resize``) and the global-pool variant (``GlobalAveragePool`` or ``ReduceMean``).

Metadata (``onnx.ModelProto.metadata_props``, strings; JSON where noted):
``task`` (``'segmentation'``), ``config``, ``input_size`` (JSON ``[H, W]``, the size
exported), ``dynamic`` (``'true'``/``'false'``), ``mean``, ``std`` (JSON lists, in the
order of the model's input channels, i.e. after the swap), ``bgr_to_rgb``
(``'true'``/``'false'``), ``class_names`` (JSON list), ``align_corners``, ``exporter``,
``opset``.
"""
import json
import os
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

from mobilenet_tasks.utils.config import build_model, load_config

STANDARD_DOMAINS = ('', 'ai.onnx')
EXPORTER = 'torch.onnx.export(dynamo=False) (TorchScript)'


class NonStandardOpError(RuntimeError):
    """The exported graph holds operators outside the default ONNX domain."""


class SegmentorLogits(nn.Module):
    """``encode_decode`` of an mmseg segmentor on a preprocessed batch: logits at the
    input's size (bilinear, the decode head's ``align_corners``).

    The same as ``EncoderDecoder.encode_decode(inputs, metas)`` with ``img_shape`` the
    input's size (what ``predict`` on an unpadded batch uses), but sized from the input
    tensor, so the traced graph can take dynamic sizes.
    """

    def __init__(self, segmentor: nn.Module):
        super().__init__()
        self.segmentor = segmentor
        self.align_corners = bool(segmentor.decode_head.align_corners)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        feats = self.segmentor.extract_feat(inputs)
        logits = self.segmentor.decode_head.forward(feats)
        return F.interpolate(logits, size=inputs.shape[2:], mode='bilinear',
                             align_corners=self.align_corners)


def _is_segmentor(model) -> bool:
    from mmseg.models.segmentors import BaseSegmentor
    return isinstance(model, BaseSegmentor)


def _is_detector(model) -> bool:
    try:
        from mmdet.models.detectors import BaseDetector
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, BaseDetector)


def load_segmentor(config, checkpoint: Optional[str] = None
                   ) -> Tuple[nn.Module, Config, dict]:
    """``(segmentor in eval mode on the CPU, config, checkpoint meta)``.

    Weights are loaded strictly with the inferencer's checks; without ``checkpoint``
    the model keeps random (initialised) weights.

    Raises:
        NotImplementedError: For a detection config (not exported yet).
        ValueError: For a config that is not a segmentor, or weights that do not fit.
    """
    from mobilenet_tasks.apis.inferencer import check_state_dict, load_weights
    cfg = load_config(config)
    state_dict, meta = (None, {}) if checkpoint is None else load_weights(checkpoint)
    model = build_model(cfg, init_weights=checkpoint is None)
    name = config if isinstance(config, str) else 'the config'
    if _is_detector(model):
        raise NotImplementedError(
            f'{name} is a detection config: ONNX export of detectors is not yet '
            'supported (segmentation configs only for now)')
    if not _is_segmentor(model):
        raise ValueError(f'{name} builds a {type(model).__name__}, not an mmseg '
                         'segmentor')
    if state_dict is not None:
        check_state_dict(model, state_dict, meta, checkpoint, config)
        model.load_state_dict(state_dict, strict=True)
    model = revert_sync_batchnorm(model).cpu().eval()  # SyncBN cannot run on a CPU
    return model, cfg, meta


def _metadata(model, cfg, meta, config, input_shape, dynamic, opset) -> Dict[str, str]:
    from mobilenet_tasks.apis.inferencer import _classes_and_palette
    pre = model.data_preprocessor
    num_classes = int(model.decode_head.num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a mismatching class list: class_<i> names
        class_names, _ = _classes_and_palette(cfg, meta, num_classes)
    enabled = bool(getattr(pre, '_enable_normalize', False))
    mean = pre.mean.flatten().tolist() if enabled else [0.0, 0.0, 0.0]
    std = pre.std.flatten().tolist() if enabled else [1.0, 1.0, 1.0]
    return {
        'task': 'segmentation',
        'config': config if isinstance(config, str) else (cfg.filename or ''),
        'input_size': json.dumps(list(input_shape)),
        'dynamic': json.dumps(bool(dynamic)),
        'mean': json.dumps(mean),
        'std': json.dumps(std),
        'bgr_to_rgb': json.dumps(bool(getattr(pre, 'channel_conversion', False))),
        'class_names': json.dumps(list(class_names)),
        'align_corners': json.dumps(bool(model.decode_head.align_corners)),
        'exporter': EXPORTER,
        'opset': str(opset),
    }


def read_metadata(onnx_model) -> dict:
    """The metadata :func:`export_segmentor` stored, decoded (JSON values parsed).

    Args:
        onnx_model: A path or an ``onnx.ModelProto``.
    """
    import onnx
    if not isinstance(onnx_model, onnx.ModelProto):
        onnx_model = onnx.load(os.fspath(onnx_model), load_external_data=False)
    out = {}
    for prop in onnx_model.metadata_props:
        try:
            out[prop.key] = json.loads(prop.value)
        except ValueError:
            out[prop.key] = prop.value
    return out


def _walk_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                yield from _walk_nodes(attr.g)
            for sub in attr.graphs:
                yield from _walk_nodes(sub)


def check_standard_ops(onnx_model) -> None:
    """Raise :class:`NonStandardOpError` if the model uses any operator outside the
    default ONNX domain (custom ops, ``com.microsoft``, local functions...).

    Args:
        onnx_model: A path or an ``onnx.ModelProto``.
    """
    import onnx
    if not isinstance(onnx_model, onnx.ModelProto):
        onnx_model = onnx.load(os.fspath(onnx_model))
    bad = sorted({f'{n.domain}::{n.op_type}' for n in _walk_nodes(onnx_model.graph)
                  if n.domain not in STANDARD_DOMAINS})
    functions = sorted(f'{f.domain}::{f.name}' for f in onnx_model.functions)
    imports = sorted(o.domain for o in onnx_model.opset_import
                     if o.domain not in STANDARD_DOMAINS)
    if bad or functions or imports:
        parts = []
        if bad:
            parts.append(f'operators {", ".join(bad)}')
        if functions:
            parts.append(f'local functions {", ".join(functions)}')
        if imports:
            parts.append(f'opset imports of {", ".join(imports)}')
        raise NonStandardOpError(
            'the exported graph is not standard ONNX: it uses ' + '; '.join(parts)
            + '. Only default-domain operators are allowed (runtimes other than the '
            'exporting library cannot run custom ops); replace the module that '
            'produces them with standard torch operations')


def _check_shape(input_shape) -> Tuple[int, int]:
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for v in input_shape)):
        raise ValueError(f'input_shape must be (H, W), two positive ints, got '
                         f'{input_shape!r}')
    return int(input_shape[0]), int(input_shape[1])


def export_segmentor(config: Union[str, Config],
                     checkpoint: Optional[str] = None,
                     out_path: Union[str, os.PathLike] = 'model.onnx',
                     input_shape: Sequence[int] = (512, 1024),
                     opset: int = 17,
                     dynamic: bool = False) -> str:
    """Export a segmentation config (and weights) to ONNX, standard operators only.

    Args:
        config (str | Config): A segmentation config (an mmseg segmentor).
        checkpoint (str, optional): Weights (as :class:`~mobilenet_tasks.apis.
            Inferencer` takes them, loaded strictly). None: random weights.
        out_path (str): The ``.onnx`` file to write (its folder is created).
        input_shape (tuple[int, int]): ``(H, W)`` of the traced input; the graph's
            input and output have this size unless ``dynamic``. For the paper's
            LR-ASPP gate (49x49 pool), the last feature map (``H/16 x W/16`` at
            output stride 16) must be at least 49x49, e.g. 769x769.
        opset (int): ONNX opset. Default: 17.
        dynamic (bool): Mark batch, height and width of input and output dynamic.
            The traced python checks (the 49x49 pool's size check) are then only
            done for ``input_shape``; the global-pool variant works at any size.

    Returns:
        str: ``out_path``.

    Raises:
        NotImplementedError: A detection config.
        NonStandardOpError: The graph holds a non-default-domain operator (the file
            is removed).
        ValueError: A bad ``input_shape``, or one too small for the pool kernel.
    """
    h, w = _check_shape(input_shape)
    model, cfg, meta = load_segmentor(config, checkpoint)
    return export_loaded(model, cfg, meta, config, out_path, (h, w), opset, dynamic)


def export_loaded(model: nn.Module, cfg: Config, meta: dict, config,
                  out_path: Union[str, os.PathLike], input_shape: Sequence[int],
                  opset: int = 17, dynamic: bool = False) -> str:
    """:func:`export_segmentor` of a segmentor already loaded by
    :func:`load_segmentor` (``(model, cfg, meta)``), so that the very same weights
    can be compared afterwards (random ones included)."""
    import onnx
    h, w = _check_shape(tuple(input_shape))
    wrapper = SegmentorLogits(model).eval()
    dummy = torch.zeros(1, 3, h, w)
    out_path = os.fspath(out_path)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                        'logits': {0: 'batch', 2: 'height', 3: 'width'}}
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks in python (the pool kernel's) become constants: expected
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        # the legacy exporter is chosen on purpose (see the module docstring)
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX',
                                category=DeprecationWarning)
        warnings.filterwarnings('ignore', message='The feature will be removed',
                                category=DeprecationWarning)
        wrapper(dummy)  # the model's own errors (e.g. a too small map) first, clearly
        torch.onnx.export(
            wrapper, (dummy, ), out_path,
            dynamo=False,
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            input_names=['input'],
            output_names=['logits'],
            dynamic_axes=dynamic_axes)
    proto = onnx.load(out_path)
    try:
        check_standard_ops(proto)
    except NonStandardOpError:
        os.remove(out_path)
        raise
    for key, value in _metadata(model, cfg, meta, config, (h, w), dynamic,
                                opset).items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = 'mobilenet_tasks'
    onnx.save(proto, out_path)
    return out_path


def compare_with_onnxruntime(config, checkpoint: Optional[str], onnx_path,
                             input_shape: Optional[Sequence[int]] = None,
                             batch_size: int = 1, seed: int = 0,
                             model: Optional[nn.Module] = None) -> dict:
    """Run PyTorch and onnxruntime (CPUExecutionProvider) on the same random
    preprocessed input and compare the logits.

    Args:
        config, checkpoint: What was exported (ignored if ``model`` is given).
        onnx_path (str): The exported file.
        input_shape (tuple, optional): ``(H, W)``; default the exported size.
        batch_size (int): Images in the input (1 unless exported ``dynamic``).
        seed (int): Seed of the standard normal input (what ``(x - mean) / std`` of
            an image roughly gives).
        model (nn.Module, optional): An already loaded segmentor in eval mode.

    Returns:
        dict: ``max_abs_diff``, ``logit_scale`` (max abs PyTorch logit),
        ``rel_diff`` (their ratio, the scale floored at 1), ``shape`` of the logits,
        ``argmax_agreement`` (fraction of pixels with the same label).
    """
    import numpy as np
    import onnxruntime as ort
    if model is None:
        model, _, _ = load_segmentor(config, checkpoint)
    if input_shape is None:
        input_shape = read_metadata(onnx_path)['input_size']
    h, w = _check_shape(tuple(input_shape))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, h, w, generator=gen)
    with torch.no_grad():
        ref = SegmentorLogits(model).eval()(x).numpy()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(onnx_path), options,
                                   providers=['CPUExecutionProvider'])
    got = session.run(['logits'], {'input': x.numpy()})[0]
    if got.shape != ref.shape:
        raise ValueError(f'onnxruntime gave logits of shape {got.shape}, PyTorch '
                         f'{ref.shape}')
    diff = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    return dict(max_abs_diff=diff, logit_scale=scale, rel_diff=diff / max(scale, 1.0),
                shape=tuple(ref.shape),
                argmax_agreement=float((got.argmax(1) == ref.argmax(1)).mean()))
