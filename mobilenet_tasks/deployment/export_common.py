"""What every exporter of this package shares: the networks exported
(:class:`SegmentorLogits`, :func:`network_for_export`), the metadata every exported file
holds (:func:`common_metadata`), the standard-operator check of ONNX graphs and the
metadata writer of ONNX files. The file formats are described in :mod:`.onnx_export`.
"""
import json
import os
import warnings
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mobilenet_tasks.utils.metainfo import classes_and_palette
from mobilenet_tasks.utils.task import num_classes, task_of_model

from .detection_graph import DetectorRawOutputs

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


def _swaps_channels(preprocessor) -> bool:
    """Whether the data preprocessor swaps BGR -> RGB: mmseg's
    ``SegDataPreProcessor`` says so in ``channel_conversion``, mmdet's
    ``DetDataPreprocessor`` (mmengine's ``ImgDataPreprocessor``) in
    ``_channel_conversion``."""
    for name in ('channel_conversion', '_channel_conversion'):
        if hasattr(preprocessor, name):
            return bool(getattr(preprocessor, name))
    return False


def common_metadata(model, cfg, meta, config, input_shape, dynamic, opset,
                    exporter: str = EXPORTER) -> Dict[str, str]:
    """The metadata every exported file holds, whatever its runtime (strings, JSON
    where the module docstring says): what :class:`~mobilenet_tasks.backends.
    BackendModel` and the inferencer need to preprocess and label like PyTorch."""
    pre = model.data_preprocessor
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # a mismatching class list: class_<i> names
        class_names, _ = classes_and_palette(cfg, meta, num_classes(model))
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
        'exporter': exporter,
        **({} if opset is None else {'opset': str(opset)}),
    }


def write_metadata(proto, metadata: Dict[str, str], out_path: str) -> str:
    """Save ``proto`` to ``out_path`` with ``metadata`` in its ``metadata_props``."""
    import onnx
    for key, value in metadata.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = 'mobilenet_tasks'
    onnx.save(proto, out_path)
    return out_path


def network_for_export(model: nn.Module, dummy: torch.Tensor):
    """``(module exported, output names, task metadata)`` of a detector or segmentor:
    the network the ExecuTorch programs, the QAT graphs and the raw-output ONNX files
    hold (segmentation logits at the input size; the detection head's raw outputs,
    ``cls_score_<i>``, ``bbox_pred_<i>``)."""
    if task_of_model(model, what='nothing to export') == 'detection':
        wrapper = DetectorRawOutputs(model).eval()
        with torch.no_grad():
            levels = len(wrapper(dummy)) // 2
        names = ([f'cls_score_{i}' for i in range(levels)]
                 + [f'bbox_pred_{i}' for i in range(levels)])
        return wrapper, names, {'task': 'detection', 'nms': 'false',
                                'num_levels': str(levels)}
    wrapper = SegmentorLogits(model).eval()
    return wrapper, ['logits'], {
        'task': 'segmentation',
        'align_corners': json.dumps(bool(model.decode_head.align_corners))}
