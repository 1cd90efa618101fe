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
exporter, which needs the ``onnxscript`` package; it is not installed here, and the
TorchScript exporter needs nothing more than ``onnx``. It gives only default-domain
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
  is mmdet's own ``predict_by_feat``, which :class:`~mobilenet_tasks.deployment.
  ort_model.ONNXRuntimeModel` runs on them (and the benchmark times only this part).

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


def load_model(config, checkpoint: Optional[str] = None
               ) -> Tuple[nn.Module, Config, dict]:
    """``(detector or segmentor in eval mode on the CPU, config, checkpoint meta)``.

    Weights are loaded strictly with the inferencer's checks; without ``checkpoint``
    the model keeps random (initialised) weights.

    Raises:
        ValueError: For a config that is neither an mmdet detector nor an mmseg
            segmentor, or weights that do not fit.
    """
    from mobilenet_tasks.apis.inferencer import check_state_dict, load_weights
    cfg = load_config(config)
    state_dict, meta = (None, {}) if checkpoint is None else load_weights(checkpoint)
    model = build_model(cfg, init_weights=checkpoint is None)
    name = config if isinstance(config, str) else 'the config'
    if not (_is_segmentor(model) or _is_detector(model)):
        raise ValueError(f'{name} builds a {type(model).__name__}, neither an mmdet '
                         'detector nor an mmseg segmentor: nothing to export')
    if state_dict is not None:
        check_state_dict(model, state_dict, meta, checkpoint, config)
        model.load_state_dict(state_dict, strict=True)
    model = revert_sync_batchnorm(model).cpu().eval()  # SyncBN cannot run on a CPU
    return model, cfg, meta


def load_segmentor(config, checkpoint: Optional[str] = None
                   ) -> Tuple[nn.Module, Config, dict]:
    """:func:`load_model` for a segmentation config (ValueError for another)."""
    model, cfg, meta = load_model(config, checkpoint)
    if not _is_segmentor(model):
        name = config if isinstance(config, str) else 'the config'
        raise ValueError(f'{name} builds a {type(model).__name__}, not an mmseg '
                         'segmentor')
    return model, cfg, meta


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
    if 'bbox_head' in model_cfg:
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


class DetectorPostprocessed(nn.Module):
    """An mmdet dense detector's ``predict`` (without the rescale to the original
    image) written for tracing to standard ONNX operators, for one image.

    mmdet's ``predict_by_feat`` cannot be traced as it is: it filters by score before
    taking the ``nms_pre`` best, with shapes that depend on the data, and calls mmcv's
    NMS, a custom op. Here the same steps are written so that the shapes known at
    export time are constants (the anchors, ``min(nms_pre, anchors x classes)`` for the
    per-level top-k) and the rest maps to ``TopK``, ``NonZero``/``Gather`` and one
    ``NonMaxSuppression`` (torchvision's ``batched_nms``, which under tracing offsets
    the boxes per class, the same trick as mmcv's ``batched_nms``). The per-level
    selection (the best ``nms_pre`` above ``score_thr``) is the same set as mmdet's
    ``filter_scores_and_topk`` (filter then take the best = take the best then
    filter). Boxes are decoded for all anchors (mmdet decodes only the kept ones;
    decoding is per anchor, so the kept boxes are the same numbers).

    Only softmax heads with a ``DeltaXYWHBBoxCoder``-like ``bbox_coder.decode`` and no
    score factors (SSD / SSDLite) are supported; others raise ``ValueError``.
    """

    def __init__(self, detector: nn.Module, input_shape: Tuple[int, int]):
        super().__init__()
        head = detector.bbox_head
        if getattr(head, 'use_sigmoid_cls', False) or not hasattr(head,
                                                                  'prior_generator'):
            raise ValueError(
                f'{type(head).__name__}: only softmax anchor heads (SSD / SSDLite) '
                'can be exported with the post-processing in the graph; export with '
                'nms=False (--no-nms) for the raw head outputs')
        cfg = head.test_cfg
        nms_cfg = dict(cfg.get('nms') or {})
        if str(nms_cfg.get('type', 'nms')) != 'nms':
            raise ValueError(f'test_cfg.nms.type={nms_cfg.get("type")!r}: only plain '
                             "'nms' maps to ONNX NonMaxSuppression; export with "
                             'nms=False (--no-nms)')
        self.detector = detector
        self.input_shape = tuple(input_shape)
        self.num_classes = int(head.num_classes)
        self.score_thr = float(cfg.get('score_thr', 0.0))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.iou_threshold = float(nms_cfg.get('iou_threshold', 0.5))
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        self.max_per_img = int(cfg.get('max_per_img', -1))
        with torch.no_grad():
            cls_scores, _ = detector._forward(torch.zeros(1, 3, *self.input_shape))
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        priors = head.prior_generator.grid_priors(sizes, device='cpu')
        self.level_counts = [int(p.shape[0]) for p in priors]
        self.register_buffer('priors', torch.cat(priors), persistent=False)

    def post_settings(self) -> dict:
        return dict(score_thr=self.score_thr, nms_pre=self.nms_pre,
                    iou_threshold=self.iou_threshold,
                    min_bbox_size=self.min_bbox_size, max_per_img=self.max_per_img)

    def _decode(self, coder, deltas: torch.Tensor) -> torch.Tensor:
        """``coder.decode(priors, deltas, max_shape=input_shape)``, by mmdet's
        ``delta2bbox`` directly: under ONNX export mmdet 3.3's
        ``DeltaXYWHBBoxCoder.decode`` switches to ``onnx_delta2bbox``, which imports
        the removed ``mmdet.core`` (ModuleNotFoundError)."""
        from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
        from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import \
            delta2bbox
        if type(coder) is not DeltaXYWHBBoxCoder:
            raise ValueError(f'{type(coder).__name__}: only DeltaXYWHBBoxCoder is '
                             'decoded in the graph; export with nms=False (--no-nms)')
        return delta2bbox(self.priors, deltas, coder.means, coder.stds,
                          self.input_shape, 16 / 1000, coder.clip_border,
                          coder.add_ctr_clamp, coder.ctr_clamp)

    def forward(self, inputs: torch.Tensor):
        from torchvision.ops import batched_nms
        head = self.detector.bbox_head
        cls_scores, bbox_preds = self.detector._forward(inputs)
        num_classes = self.num_classes
        deltas = torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])
        boxes = self._decode(head.bbox_coder, deltas)
        all_scores, all_labels, all_anchors = [], [], []
        start = 0
        for cls_score, count in zip(cls_scores, self.level_counts):
            scores = cls_score[0].permute(1, 2, 0).reshape(-1, num_classes + 1)
            scores = scores.softmax(-1)[:, :num_classes].reshape(-1)
            k = scores.numel() if self.nms_pre <= 0 else min(self.nms_pre,
                                                             scores.numel())
            scores, idx = scores.topk(k)
            keep = scores > self.score_thr
            scores, idx = scores[keep], idx[keep]
            all_scores.append(scores)
            all_labels.append(idx % num_classes)
            all_anchors.append(torch.div(idx, num_classes, rounding_mode='floor')
                               + start)
            start += count
        scores = torch.cat(all_scores)
        labels = torch.cat(all_labels)
        boxes = boxes[torch.cat(all_anchors)]
        if self.min_bbox_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            keep = (wh[:, 0] > self.min_bbox_size) & (wh[:, 1] > self.min_bbox_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, self.iou_threshold)
        if self.max_per_img > 0:
            keep = keep[:self.max_per_img]
        return boxes[keep], scores[keep], labels[keep]


class DetectorRawOutputs(nn.Module):
    """The detector's network (backbone, neck, head), its raw per-level outputs as a
    flat tuple ``(cls_score_0, ..., bbox_pred_0, ...)``."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, inputs: torch.Tensor):
        cls_scores, bbox_preds = self.detector._forward(inputs)
        return tuple(cls_scores) + tuple(bbox_preds)


def _swaps_channels(preprocessor) -> bool:
    """Whether the data preprocessor swaps BGR -> RGB: mmseg's
    ``SegDataPreProcessor`` says so in ``channel_conversion``, mmdet's
    ``DetDataPreprocessor`` (mmengine's ``ImgDataPreprocessor``) in
    ``_channel_conversion``."""
    for name in ('channel_conversion', '_channel_conversion'):
        if hasattr(preprocessor, name):
            return bool(getattr(preprocessor, name))
    return False


def _common_metadata(model, cfg, meta, config, input_shape, dynamic, opset,
                     num_classes) -> Dict[str, str]:
    from mobilenet_tasks.apis.inferencer import _classes_and_palette
    pre = model.data_preprocessor
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a mismatching class list: class_<i> names
        class_names, _ = _classes_and_palette(cfg, meta, num_classes)
    enabled = bool(getattr(pre, '_enable_normalize', False))
    mean = pre.mean.flatten().tolist() if enabled else [0.0, 0.0, 0.0]
    std = pre.std.flatten().tolist() if enabled else [1.0, 1.0, 1.0]
    return {
        'config': config if isinstance(config, str) else (cfg.filename or ''),
        'input_size': json.dumps(list(input_shape)),
        'dynamic': json.dumps(bool(dynamic)),
        'mean': json.dumps(mean),
        'std': json.dumps(std),
        'bgr_to_rgb': json.dumps(_swaps_channels(pre)),
        'class_names': json.dumps(list(class_names)),
        'exporter': EXPORTER,
        'opset': str(opset),
    }


def export_loaded(model: nn.Module, cfg: Config, meta: dict, config,
                  out_path: Union[str, os.PathLike], input_shape: Sequence[int],
                  opset: int = 17, dynamic: bool = False, nms: bool = True) -> str:
    """:func:`export_model` of a model already loaded by :func:`load_model`
    (``(model, cfg, meta)``), so that the very same weights can be compared
    afterwards (random ones included)."""
    h, w = _check_shape(tuple(input_shape))
    dummy = torch.zeros(1, 3, h, w)
    if _is_detector(model):
        if dynamic:
            raise ValueError('detection graphs are exported for one input size (the '
                             'anchors are constants of the graph): drop dynamic / '
                             '--dynamic and give the size with --shape H W')
        num_classes = int(model.bbox_head.num_classes)
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
        num_classes = int(model.decode_head.num_classes)
        output_names = ['logits']
        metadata = {'task': 'segmentation',
                    'align_corners': json.dumps(bool(model.decode_head.align_corners))}
        dynamic_axes = None
        if dynamic:
            dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'},
                            'logits': {0: 'batch', 2: 'height', 3: 'width'}}
    metadata.update(_common_metadata(model, cfg, meta, config, (h, w), dynamic, opset,
                                     num_classes))
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
    for key, value in metadata.items():
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
    preprocessed input and compare their outputs.

    Segmentation: the logits. Detection with NMS in the graph: the detections against
    mmdet's own ``predict_by_feat`` (no rescale) on the same head outputs; without
    NMS: the raw head outputs.

    Args:
        config, checkpoint: What was exported (ignored if ``model`` is given).
        onnx_path (str): The exported file.
        input_shape (tuple, optional): ``(H, W)``; default the exported size.
        batch_size (int): Images in the input (1 unless exported ``dynamic``).
        seed (int): Seed of the standard normal input (what ``(x - mean) / std`` of
            an image roughly gives).
        model (nn.Module, optional): An already loaded model in eval mode.

    Returns:
        dict: ``max_abs_diff`` (logits; detection: box pixels and scores),
        ``logit_scale`` (max abs PyTorch value), ``rel_diff`` (their ratio, the scale
        floored at 1; ``inf`` if detections differ in number or labels), ``shape``;
        segmentation: ``argmax_agreement`` (fraction of pixels with the same label);
        detection with NMS: ``num_detections`` (PyTorch, onnxruntime),
        ``labels_equal`` (the detections pair up one to one with equal labels and
        scores within 1e-4, in any order), ``tied_scores`` (PyTorch's scores hold ties: then, if the
        labels differ, only the sorted scores are compared).
    """
    import numpy as np
    if model is None:
        model, _, _ = load_model(config, checkpoint)
    meta = read_metadata(onnx_path)
    if input_shape is None:
        input_shape = meta['input_size']
    h, w = _check_shape(tuple(input_shape))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, h, w, generator=gen)
    from .ort_model import cpu_session  # ort_model imports this module
    session = cpu_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {'input': x.numpy()})
    if _is_detector(model):
        with torch.no_grad():
            cls_scores, bbox_preds = model._forward(x)
        if not meta.get('nms', True):
            ref = [t.numpy() for t in list(cls_scores) + list(bbox_preds)]
            return _compare_arrays(ref, got, names)
        with torch.no_grad():
            results = model.bbox_head.predict_by_feat(
                cls_scores, bbox_preds,
                batch_img_metas=[dict(img_shape=(h, w), scale_factor=(1.0, 1.0))],
                rescale=False)[0]
        ref = [results.bboxes.numpy(), results.scores.numpy(), results.labels.numpy()]
        counts = (len(ref[1]), len(got[1]))
        # detections with scores a rounding error apart may come in either order
        order = _match_detections(ref, got) if counts[0] == counts[1] else None
        same = order is not None
        if same:
            got = [g[order] for g in got]
        # Equal scores (a head at its initial weights gives every class 1/(C+1)) make
        # the top-k and NMS choose among ties arbitrarily: then only the sorted scores
        # can be compared.
        tied = np.unique(ref[1]).size < ref[1].size
        if same:
            report = _compare_arrays(ref[:2], got[:2], names[:2])
        elif tied and counts[0] == counts[1]:
            report = _compare_arrays([np.sort(ref[1])], [np.sort(got[1])], ['scores'])
        else:
            report = dict(max_abs_diff=float('inf'), rel_diff=float('inf'),
                          logit_scale=float(np.abs(ref[0]).max(initial=0.0)))
        report.update(num_detections=counts, labels_equal=same, tied_scores=tied,
                      shape=(counts[0], 4))
        return report
    with torch.no_grad():
        ref = SegmentorLogits(model).eval()(x).numpy()
    got = got[0]
    if got.shape != ref.shape:
        raise ValueError(f'onnxruntime gave logits of shape {got.shape}, PyTorch '
                         f'{ref.shape}')
    report = _compare_arrays([ref], [got], names)
    report['argmax_agreement'] = float((got.argmax(1) == ref.argmax(1)).mean())
    return report


def _match_detections(ref: list, got: list, score_tol: float = 1e-4):
    """Indices putting ``got``'s detections in ``ref``'s order, or None.

    Each reference detection takes the unused one of the same label with the closest
    score and box; detections differing only in order (scores within ``score_tol``)
    then line up. None if the labels cannot be paired one to one or a pair's scores
    differ by more than ``score_tol``.
    """
    import numpy as np
    (rb, rs, rl), (gb, gs, gl) = ref, got
    used = np.zeros(len(gs), bool)
    order = []
    for i in range(len(rs)):
        cand = np.flatnonzero((gl == rl[i]) & ~used
                              & (np.abs(gs - rs[i]) <= score_tol))
        if cand.size == 0:
            return None
        cost = np.abs(gb[cand] - rb[i]).max(1) + np.abs(gs[cand] - rs[i])
        j = int(cand[np.argmin(cost)])
        used[j] = True
        order.append(j)
    return np.asarray(order, dtype=np.int64)


def _compare_arrays(ref: list, got: list, names: list) -> dict:
    import numpy as np
    for r, g, name in zip(ref, got, names):
        if r.shape != g.shape:
            raise ValueError(f'onnxruntime gave {name} of shape {g.shape}, PyTorch '
                             f'{r.shape}')
    diff = max(float(np.abs(g - r).max(initial=0.0)) for r, g in zip(ref, got))
    scale = max(float(np.abs(r).max(initial=0.0)) for r in ref)
    return dict(max_abs_diff=diff, logit_scale=scale, rel_diff=diff / max(scale, 1.0),
                shape=tuple(ref[0].shape))
