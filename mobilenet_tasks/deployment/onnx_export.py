"""ONNX export of the detection and segmentation models, standard ONNX operators only.

Segmentation
------------
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
exporter, which needs the ``onnxscript`` package; the float graphs keep the TorchScript
exporter, which needs nothing more than ``onnx`` and whose graphs every test and
benchmark figure here was made with (the dynamo exporter writes QAT checkpoints'
int8 graphs, :mod:`.qat_onnx`, which the TorchScript one cannot). It gives only default-domain
operators for these models (Conv, BatchNorm folded into Conv in eval, HardSigmoid /
HardSwish or their decomposition, AveragePool / GlobalAveragePool, Sigmoid, Mul, Add,
Resize), opset 17 by default. Both LR-ASPP gates export: the paper's 49x49 average
pool with stride (16, 20) (``AveragePool``; the pooled map is resized back with
``Resize``) and the global-pool variant (``GlobalAveragePool`` or ``ReduceMean``).

Detection
---------
Input ``input``: ``1 x 3 x H x W``, preprocessed as for segmentation (the detector's
``DetDataPreprocessor``: BGR -> RGB, ``(x - mean) / std``), at the size the config's
test pipeline resizes to (320x320 for SSDLite). Two graphs:

- ``nms=True`` (default): the whole of mmdet's ``predict`` after the network, in the
  graph: softmax scores, per level the ``nms_pre`` best (anchor, class) pairs above
  ``score_thr``, box decoding (``DeltaXYWHBBoxCoder``, clipped to the input), the
  ``min_bbox_size`` filter, class-aware NMS (one ``NonMaxSuppression`` on boxes offset
  per class, as mmcv's ``batched_nms`` does) and the ``max_per_img`` best. Outputs
  ``boxes`` (``K x 4``, x1 y1 x2 y2 in input pixels; divide by the resize's scale
  factor for the original image), ``scores`` (``K``), ``labels`` (``K``, int64), best
  first. Batch 1 (NMS picks per image; the inferencer runs images one by one).
- ``nms=False``: the head's raw outputs, ``cls_score_<i>`` (``N x A*(C+1) x h x w``)
  and ``bbox_pred_<i>`` (``N x A*4 x h x w``) for each level ``i``; the post-processing
  is mmdet's own ``predict_by_feat``, which :class:`~mobilenet_tasks.backends.BackendModel`
  runs on them (and the benchmark times only this part).

Everything is traced for one input size: the anchors are constants of the graph.

Metadata (``onnx.ModelProto.metadata_props``, strings; JSON where noted):
``task`` (``'segmentation'`` / ``'detection'``), ``config``, ``input_size`` (JSON
``[H, W]``, the size exported), ``dynamic`` (``'true'``/``'false'``), ``mean``, ``std``
(JSON lists, in the order of the model's input channels, i.e. after the swap),
``bgr_to_rgb`` (``'true'``/``'false'``), ``class_names`` (JSON list), ``exporter``,
``opset``; segmentation: ``align_corners``; detection: ``nms`` (``'true'``/``'false'``),
``test_cfg`` (JSON, the post-processing settings the graph was made with),
``num_levels``.
"""
import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

from mobilenet_tasks.backends.onnxruntime import \
    read_onnx_metadata as read_metadata  # noqa: F401 (the format is described here)
from mobilenet_tasks.utils.config import build_model, load_config
from mobilenet_tasks.utils.task import task_of_config, task_of_model
from mobilenet_tasks.utils.weights import load_into, load_weights
from .detection_graph import DetectorPostprocessed, DetectorRawOutputs
# (the shared pieces live in export_common; their names stay importable from here)
from .export_common import (EXPORTER, STANDARD_DOMAINS,  # noqa: F401
                            NonStandardOpError, SegmentorLogits, _check_shape,
                            _walk_nodes, check_standard_ops, common_metadata,
                            network_for_export, write_metadata)

def load_model(config, checkpoint: Optional[str] = None
               ) -> Tuple[nn.Module, Config, dict]:
    """``(detector or segmentor in eval mode on the CPU, config, checkpoint meta)``.

    Weights are loaded strictly with the inferencer's checks; without ``checkpoint``
    the model keeps random (initialised) weights.

    Raises:
        ValueError: For a config that is neither an mmdet detector nor an mmseg
            segmentor, or weights that do not fit.
    """
    cfg = load_config(config)
    if checkpoint is not None and not os.path.isfile(os.fspath(checkpoint)):
        raise FileNotFoundError(f'weights {os.fspath(checkpoint)}: no such file')
    loaded = None
    if checkpoint is not None:
        from .qat_config import config_for_checkpoint
        loaded = load_weights(checkpoint)
        cfg = config_for_checkpoint(cfg, *loaded)  # a QAT checkpoint: its QAT model
    model = build_model(cfg, init_weights=checkpoint is None)
    name = config if isinstance(config, str) else 'the config'
    task_of_model(model, name, 'nothing to export')
    meta = {} if checkpoint is None else load_into(model, checkpoint, config, loaded)
    model = revert_sync_batchnorm(model).cpu().eval()  # SyncBN cannot run on a CPU
    return model, cfg, meta


def load_segmentor(config, checkpoint: Optional[str] = None
                   ) -> Tuple[nn.Module, Config, dict]:
    """:func:`load_model` for a segmentation config (ValueError for another)."""
    model, cfg, meta = load_model(config, checkpoint)
    if task_of_model(model) != 'segmentation':
        name = config if isinstance(config, str) else 'the config'
        raise ValueError(f'{name} builds a {type(model).__name__}, not an mmseg '
                         'segmentor')
    return model, cfg, meta


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
        NonStandardOpError: The graph holds a non-default-domain operator (the file
            is removed).
        ValueError: A detection config, a bad ``input_shape``, or one too small for
            the pool kernel.
    """
    h, w = _check_shape(input_shape)
    model, cfg, meta = load_segmentor(config, checkpoint)
    return export_loaded(model, cfg, meta, config, out_path, (h, w), opset, dynamic)


def export_model(config: Union[str, Config],
                 checkpoint: Optional[str] = None,
                 out_path: Union[str, os.PathLike] = 'model.onnx',
                 input_shape: Optional[Sequence[int]] = None,
                 opset: int = 17,
                 dynamic: bool = False,
                 nms: bool = True) -> str:
    """Export a detection or segmentation config (and weights) to ONNX.

    Args:
        config, checkpoint, out_path, opset: As :func:`export_segmentor`.
        input_shape (tuple[int, int], optional): ``(H, W)``; default
            :func:`default_input_shape` (the test pipeline's fixed resize for
            detection, the crop size for segmentation).
        dynamic (bool): Segmentation only (detection graphs hold the anchors of one
            size: ValueError).
        nms (bool): Detection only: post-processing in the graph (True) or the
            head's raw outputs (False); see the module docstring.

    Returns:
        str: ``out_path``.
    """
    model, cfg, meta = load_model(config, checkpoint)
    shape = default_input_shape(cfg) if input_shape is None else input_shape
    return export_loaded(model, cfg, meta, config, out_path, shape, opset, dynamic,
                         nms=nms)


def default_input_shape(cfg) -> Tuple[int, int]:
    """The input size a config's model sees at test time, ``(H, W)``.

    Detection: the test pipeline's ``Resize`` with ``keep_ratio=False`` (SSDLite:
    320x320). Segmentation: ``data_preprocessor.size`` (the crop size), else
    512x1024.

    Raises:
        ValueError: A detection config whose test pipeline does not resize every
            image to one size (then there is no single size to export for).
    """
    model_cfg = cfg.model
    size = (model_cfg.get('data_preprocessor') or {}).get('size')
    if task_of_config(cfg) == 'detection':
        from mobilenet_tasks.apis.preprocess import config_test_pipeline
        for t in config_test_pipeline(cfg):
            if str(t['type']).split('.')[-1] == 'Resize':
                scale = t.get('scale')
                if scale is not None and not t.get('keep_ratio', False):
                    w, h = (scale, scale) if isinstance(scale, int) else scale
                    return int(h), int(w)
        raise ValueError('the config\'s test pipeline does not resize every image to '
                         'one size (a Resize with keep_ratio=False): pass the input '
                         'size to export for (--shape H W)')
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    return 512, 1024


def export_loaded(model: nn.Module, cfg: Config, meta: dict, config,
                  out_path: Union[str, os.PathLike], input_shape: Sequence[int],
                  opset: int = 17, dynamic: bool = False, nms: bool = True) -> str:
    """:func:`export_model` of a model already loaded by :func:`load_model`
    (``(model, cfg, meta)``), so that the very same weights can be compared
    afterwards (random ones included)."""
    h, w = _check_shape(tuple(input_shape))
    if hasattr(model, 'converted_graph'):  # a QAT checkpoint: its int8 graph, QDQ
        from .qat_onnx import export_qat_onnx
        return export_qat_onnx(model, cfg, meta, config, out_path, (h, w), nms=nms,
                               dynamic=dynamic)
    dummy = torch.zeros(1, 3, h, w)
    if task_of_model(model, what='nothing to export') == 'detection':
        if dynamic:
            raise ValueError('detection graphs are exported for one input size (the '
                             'anchors are constants of the graph): drop dynamic / '
                             '--dynamic and give the size with --shape H W')
        metadata = {'task': 'detection', 'nms': json.dumps(bool(nms))}
        if nms:
            wrapper = DetectorPostprocessed(model, (h, w)).eval()
            output_names = ['boxes', 'scores', 'labels']
            metadata['test_cfg'] = json.dumps(wrapper.post_settings())
        else:
            wrapper = DetectorRawOutputs(model).eval()
            with torch.no_grad():
                levels = len(wrapper(dummy)) // 2
            output_names = ([f'cls_score_{i}' for i in range(levels)]
                            + [f'bbox_pred_{i}' for i in range(levels)])
            metadata['num_levels'] = str(levels)
        dynamic_axes = None
    else:
        wrapper = SegmentorLogits(model).eval()
        output_names = ['logits']
        metadata = {'task': 'segmentation',
                    'align_corners': json.dumps(bool(model.decode_head.align_corners))}
        dynamic_axes = None
        if dynamic:
            dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                            'logits': {0: 'batch', 2: 'height', 3: 'width'}}
    metadata.update(common_metadata(model, cfg, meta, config, (h, w), dynamic, opset))
    return _export(wrapper, dummy, os.fspath(out_path), output_names, dynamic_axes,
                   opset, metadata)


def _export(wrapper: nn.Module, dummy: torch.Tensor, out_path: str,
            output_names: List[str], dynamic_axes: Optional[dict], opset: int,
            metadata: Dict[str, str]) -> str:
    import onnx
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # shape checks in python (the pool kernel's, the top-k sizes) become
        # constants: expected, the graph is for this size
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        # torchvision's batched_nms is scripted when traced (torch.jit.script is
        # deprecated in torch 2.14, it still works)
        warnings.filterwarnings('ignore', message='.*torch.jit.script.*',
                                category=FutureWarning)
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
            output_names=output_names,
            dynamic_axes=dynamic_axes)
    proto = onnx.load(out_path)
    try:
        check_standard_ops(proto)
    except NonStandardOpError:
        os.remove(out_path)
        raise
    return write_metadata(proto, metadata, out_path)

