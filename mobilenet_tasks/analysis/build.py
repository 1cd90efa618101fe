"""Getting every backend of a model ready to time: building the module that is timed
(random, initialised weights), checking that it takes the input size, folding its BNs,
exporting it to ONNX and to ExecuTorch, quantizing to int8 for onnxruntime, ExecuTorch
and OpenVINO (the project's deployment code does the work,
:mod:`mobilenet_tasks.deployment`), opening runtime sessions, and comparing int8
outputs with fp32 ones. Which backend uses which of these: :mod:`.runtimes`."""
import contextlib
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from .catalogue import Entry


class TorchvisionSSDTensor(nn.Module):
    """torchvision SSD without transform and postprocess: ``head(backbone(x))``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        features = list(self.model.backbone(inputs).values())
        out = self.model.head(features)
        return out['bbox_regression'], out['cls_logits']


@dataclass
class Built:
    entry: Entry
    raw: nn.Module  # the detector / segmentor / torchvision model, eval mode
    timed: nn.Module  # what is timed
    cfg: object = None


@contextlib.contextmanager
def quiet_mmengine():
    """mmengine's logger at ERROR (building models of several scopes warns that the
    default scope changes)."""
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build(entry: Entry) -> Built:
    """Build a model in eval mode on the CPU with random (initialised) weights."""
    from mmengine.model import revert_sync_batchnorm

    from mobilenet_tasks.deployment import DetectorRawOutputs, SegmentorLogits
    from mobilenet_tasks.utils.config import build_model, load_config
    if entry.source == 'torchvision':
        import torchvision
        raw = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None).eval()
        return Built(entry, raw, TorchvisionSSDTensor(raw).eval())
    cfg = load_config(entry.config, entry.cfg_options or None)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        raw = build_model(cfg, init_weights=True)
    raw = revert_sync_batchnorm(raw).cpu().eval()
    timed = SegmentorLogits(raw) if entry.task == 'segmentation' else \
        DetectorRawOutputs(raw)
    return Built(entry, raw, timed.eval(), cfg)


def check_size(built: Built, size: Tuple[int, int]) -> Optional[str]:
    """Run the timed module on the meta device (shapes only): the reason it cannot take
    a ``size`` input, or None."""
    try:
        module = copy.deepcopy(built.timed).to('meta')
    except Exception:  # pragma: no cover - a module that cannot move to meta
        return None
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter('ignore')
            module(torch.empty(1, 3, *size, device='meta'))
    except NotImplementedError:  # an operator without a meta kernel: cannot tell
        return None
    except Exception as e:  # noqa: BLE001 - the model's own error, reported
        return f'{type(e).__name__}: {e}'
    return None


def size_hint(entry: Entry, size) -> str:
    """What to do about a ``size`` the model of ``entry`` cannot take."""
    if entry.task != 'segmentation':
        return f'use a larger --det-size than {size[0]} {size[1]}'
    if entry.source == 'mmseg':
        return ("mmseg's LR-ASPP pools 49x49 on its output-stride-8 map: it needs "
                'inputs of at least 385x385 (e.g. --seg-size 512 1024)')
    return ("the paper's LR-ASPP gate pools 49x49 on the output-stride-16 map: it needs "
            'inputs of at least 769x769 (the paper measures 1024 2048); pass '
            '--global-pool to run our LR-ASPP heads with global pooling at smaller '
            'sizes')


def fold_bn(module: nn.Module):
    """``(copy of module with every BN folded into its conv, FuseReport)``
    (:func:`mobilenet_tasks.deployment.fuse_conv_bn`)."""
    from mobilenet_tasks.deployment import fuse_conv_bn
    module = copy.deepcopy(module).eval()
    report = fuse_conv_bn(module)
    return module, report


def export_onnx(built: Built, size, out_path: Path) -> str:
    """Export the timed graph of ``built`` (its very weights) to ONNX fp32 with
    :func:`mobilenet_tasks.deployment.export_loaded` (detection: the raw head outputs,
    ``nms=False``); NotImplementedError where there is no exporter."""
    from mobilenet_tasks.deployment import export_loaded
    entry = built.entry
    _no_torchvision(built, 'ONNX')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return export_loaded(built.raw, built.cfg, {}, entry.config, out_path,
                             tuple(size), nms=False)


def _no_torchvision(built: Built, what: str) -> None:
    if built.entry.source == 'torchvision':
        raise NotImplementedError(f"the project's {what} exporter takes mmdet / mmseg "
                                  'models only (it reads their config and heads)')


def export_executorch(built: Built, size, out_path: Path, int8: bool = False,
                      images=None) -> dict:
    """Export the timed graph of ``built`` (its very weights) to an ExecuTorch program
    delegated to XNNPACK with :func:`mobilenet_tasks.deployment.executorch_export.
    export_executorch_loaded` (the same graph as the ONNX export); ``int8``: PT2E with
    XNNPACK's quantizer, calibrated on ``images`` (a list of files, or a function
    returning it, called only if there is an exporter). Returns a summary
    (``path``...); NotImplementedError where there is no exporter."""
    _no_torchvision(built, 'ExecuTorch')
    from mobilenet_tasks.deployment.executorch_export import export_executorch_loaded
    images = images() if callable(images) else images
    cfg = calibration_config(built.cfg, size) if int8 else built.cfg
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        report = export_executorch_loaded(
            built.raw, cfg, {}, built.entry.config, out_path, tuple(size), int8=int8,
            images=images, num_images=len(images) if images else None)
    summary = dict(path=report.out_path, file_bytes=report.file_bytes,
                   not_delegated=dict(report.not_delegated))
    if int8:
        summary.update(method='PT2E, XNNPACKQuantizer', calibration_images=len(images),
                       quantization=dict(getattr(report, 'quantization', {}) or {}))
    return summary


def quantize_openvino_int8(built: Built, fp32_path: str, out_xml: str, size,
                           images: List[str]) -> dict:
    """NNCF int8 of the fp32 ONNX graph (:func:`mobilenet_tasks.deployment.
    openvino_export.quantize_openvino`, its default preset), calibrated on ``images``
    preprocessed as for onnxruntime; an OpenVINO IR (``.xml`` + ``.bin``)."""
    from mobilenet_tasks.deployment.openvino_export import quantize_openvino
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        report = quantize_openvino(fp32_path, out_xml,
                                   config=calibration_config(built.cfg, size),
                                   images=images, num_images=len(images))
    summary = dict(path=report.out_path, method='NNCF post-training quantization',
                   calibration_images=len(images))
    for key in ('preset', 'fake_quantize', 'float_ops'):
        if getattr(report, key, None) is not None:
            summary[key] = _plain(getattr(report, key))
    return summary


def _plain(value):
    """``value`` as JSON can hold it."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    return str(value)


def calibration_config(cfg, size):
    """``cfg`` with its test resize set to exactly ``size`` (H, W), so that
    :func:`~mobilenet_tasks.deployment.quantize_model` preprocesses the calibration
    images to the size the graph was exported for."""
    from mobilenet_tasks.apis.preprocess import config_test_pipeline
    cfg = copy.deepcopy(cfg)
    pipeline = config_test_pipeline(cfg)
    for transform in pipeline:
        if str(transform['type']).split('.')[-1] == 'Resize':
            transform.pop('scale_factor', None)
            transform.update(scale=(size[1], size[0]), keep_ratio=False)
    if isinstance(cfg.get('test_dataloader', {}).get('dataset'), dict):
        cfg.test_dataloader.dataset.pipeline = pipeline
    cfg.test_pipeline = pipeline
    return cfg


def calibration_images(folder: Path, size, count: int) -> List[str]:
    """``count`` random-noise BGR images of ``size`` (H, W), written once."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f'noise_{size[0]}x{size[1]}_{i}.png'
        image = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
        if not path.is_file():
            cv2.imwrite(str(path), image)
        paths.append(str(path))
    return paths


def quantize_int8(built: Built, fp32_path: str, int8_path: str, size,
                  images: List[str]) -> dict:
    """:func:`mobilenet_tasks.deployment.quantize_model` of the fp32 graph (the
    project's recipe: QDQ, int8 weights per channel and uint8 activations, MinMax,
    post-processing kept float), calibrated on ``images``; returns a summary."""
    from mobilenet_tasks.deployment import quantize_model
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        report = quantize_model(fp32_path, int8_path,
                                config=calibration_config(built.cfg, size),
                                images=images, num_images=len(images))
    return dict(path=report.out_path, method=report.method,
                per_channel=report.per_channel, calibration_images=report.num_images,
                quantized_ops=dict(report.quantized_ops),
                float_ops=dict(report.float_ops))


def ort_session(path: str, threads: int):
    """An onnxruntime CPU backend on ``threads`` intra-op threads, denormals as zero
    (:func:`mobilenet_tasks.backends.open_backend`)."""
    from mobilenet_tasks.backends import open_backend
    return open_backend(path, threads=threads, denormals_as_zero=True)


def open_session(path: str, runtime: str, threads: int, **options):
    """``path`` opened by ``runtime`` (a :data:`~mobilenet_tasks.backends.RUNTIMES`
    name) on ``threads`` threads."""
    from mobilenet_tasks.backends import open_backend
    return open_backend(path, backend=runtime, threads=threads, **options)


def _flat(outputs) -> np.ndarray:
    if isinstance(outputs, (list, tuple)):
        return np.concatenate([_flat(o) for o in outputs]) if outputs else np.zeros(0)
    if isinstance(outputs, torch.Tensor):
        outputs = outputs.numpy()
    return np.asarray(outputs, dtype=np.float64).ravel()


def fidelity(ref: List[np.ndarray], got: List[np.ndarray], task: str) -> dict:
    """How close int8 outputs are to fp32 ones on the same input."""
    a, b = _flat(list(ref)), _flat(list(got))
    scale = float(np.abs(a).max()) if a.size else 0.0
    out = dict(max_abs_diff=float(np.abs(a - b).max()), scale=scale,
               rel_max_diff=float(np.abs(a - b).max()) / max(scale, 1e-12),
               cosine=float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
    if task == 'segmentation':
        out['argmax_agreement'] = float((ref[0].argmax(1) == got[0].argmax(1)).mean())
    return out
