"""Params, MAdds and CPU latency of our detection and segmentation configs and of the
stock peers, on four backends, with the paper's speed ratios computed within one run.

What is timed (the same definition for ours and for the peers): the network on one
preprocessed float32 ``1 x 3 x H x W`` input, batch 1, nothing else (no image decoding,
resizing, normalisation, box decoding or NMS):

- detection: backbone + neck + head, the raw per-level class and box outputs
  (:class:`~mobilenet_tasks.deployment.onnx_export.DetectorRawOutputs`, an mmdet
  detector's ``mode='tensor'`` forward, what ``export_model(..., nms=False)`` exports;
  torchvision's ``ssdlite320_mobilenet_v3_large``: ``head(backbone(x))`` without its
  transform and postprocess);
- segmentation: backbone + decode head + the bilinear resize of the logits to the input
  size (:class:`~mobilenet_tasks.deployment.onnx_export.SegmentorLogits`, the segmentor's
  ``encode_decode``).

Backends: ``eager`` (PyTorch, ``torch.inference_mode``), ``fused`` (PyTorch with every
BN folded into its conv, :func:`~mobilenet_tasks.deployment.fuse.fuse_conv_bn`), ``ort``
(onnxruntime fp32, CPUExecutionProvider, on the graph
:func:`~mobilenet_tasks.deployment.onnx_export.export_loaded` writes from the same
weights), ``ort-int8`` (that graph quantized by
:func:`~mobilenet_tasks.deployment.quantize.quantize_model`, the project's recipe,
calibrated on a few random-noise images: good enough for latency, not for accuracy).
Weights are random (initialised as the config says): latency does not depend on their
values. Denormals are flushed to zero on both runtimes, so random weights cannot make a
model slower than trained ones would.

Latency: for each thread count (1 and all cores by default; ``torch.set_num_threads``,
onnxruntime ``intra_op_num_threads`` with ``inter_op_num_threads=1``), every runner of
one task (model x backend) is warmed up, then timed once per round, in an order rotated
each round, for ``repeats`` rounds; the median is reported. Interleaving spreads drifts
in machine load over all runners alike, so the ratios are computed within one run.

Params and MAdds come from :func:`mobilenet_tasks.utils.complexity.count_complexity` on
the very module that is timed, at the benchmark's input size.

Accuracy (for the Figure 1 plot and the table) is never measured here: ours is the
paper's figure for the architecture the config builds (Table 6 mAP on COCO test-dev,
Table 7 mIoU on Cityscapes val, Table 8 mIoU on Cityscapes test); the peers' is what
mmdet / mmseg (metafiles) and torchvision (weights metadata) publish for their trained
weights.
"""
import contextlib
import copy
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from mobilenet_tasks.utils.paper import (PAPER_ACCURACY, PAPER_LATENCY_MS,
                                          PAPER_METRIC)

BACKENDS = ('eager', 'fused', 'ort', 'ort-int8')
BACKEND_LABELS = {'eager': 'PyTorch eager', 'fused': 'PyTorch, BN folded',
                  'ort': 'onnxruntime fp32', 'ort-int8': 'onnxruntime int8'}
DET_SIZE = (320, 320)  # Table 6
SEG_SIZE = (1024, 2048)  # Table 7
QUICK_DET_SIZE = (160, 160)
# mmseg's stock LR-ASPP pools 49x49 on its output-stride-8 map: 385x385 is its least
# input; ours run with --global-pool in quick mode (their 49x49 pool needs 769x769).
QUICK_SEG_SIZE = (392, 392)

WHAT_IS_TIMED = {
    'detection': 'backbone + neck + head on a preprocessed 1x3xHxW float32 input, raw '
                 "per-level outputs (mmdet model(x, mode='tensor'); torchvision: "
                 'head(backbone(x))); no box decoding, no NMS',
    'segmentation': 'backbone + decode head + bilinear resize of the logits to HxW on a '
                    'preprocessed 1x3xHxW float32 input (encode_decode); no argmax',
}

# Table 7's rows, named (configs/README.md).
TABLE7_ROWS = {'1': 'R-ASPP V2', '2': 'R-ASPP V2 RF2', '3': 'LR-ASPP V2 F256',
               '4': 'LR-ASPP V2', '5': 'R-ASPP V3', '6': 'R-ASPP V3 RF2',
               '7': 'LR-ASPP V3 F256', '8': 'LR-ASPP V3', '9': 'LR-ASPP V2 0.5',
               '10': 'LR-ASPP V2 0.35', '11': 'LR-ASPP V3-Small'}

# ---------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------
MMDET_SSDLITE = 'mmdet:ssdlite_mobilenetv2-scratch_8xb24-600e_coco'
MMSEG_LRASPP = 'mmseg:mobilenet-v3-d8_lraspp_4xb4-320k_cityscapes-512x1024'
TV_SSDLITE = 'torchvision:ssdlite320_mobilenet_v3_large'
PEERS = {
    MMDET_SSDLITE: dict(task='detection', short="mmdet SSDLite V2",
                        config='ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'),
    MMSEG_LRASPP: dict(task='segmentation', short="mmseg LR-ASPP V3 (d8)",
                       config='mobilenet_v3/mobilenet-v3-d8_lraspp_4xb4-320k_'
                       'cityscapes-512x1024.py'),
    TV_SSDLITE: dict(task='detection', short='torchvision SSDLite V3', config=None),
}
V3_REDUCED = 'ssdlite_v3_large_reduced_coco'
LRASPP_V3 = 'lraspp_v3_large_cityscapes'
RASPP_V2 = 'raspp_v2_cityscapes'
DEFAULT_MODELS = (
    # Table 6
    V3_REDUCED, 'ssdlite_v3_large_coco', 'ssdlite_v3_small_coco',
    'ssdlite_v3_small_reduced_coco', 'ssdlite_v2_coco', 'ssdlite_mnasnet_coco',
    'ssdlite_v1_coco',
    # Table 7 rows 1, 4, 8, 11
    RASPP_V2, 'lraspp_v2_cityscapes', LRASPP_V3, 'lraspp_v3_small_cityscapes',
)
QUICK_MODELS = (V3_REDUCED, LRASPP_V3, RASPP_V2)

# Ratios computed within the run: numerator (model, backend) / denominator (model,
# backend). Rows between two models (``same_backend``) are given for eager and, as extra
# rows, for every other backend measured on both sides; the target applies to each.
RATIOS = (
    dict(key='ssdlite_v3_reduced_vs_mmdet_v2', label="SSDLite V3† / mmdet's SSDLite V2",
         num=(V3_REDUCED, 'eager'), den=(MMDET_SSDLITE, 'eager'), same_backend=True,
         target=0.73, paper='119 ms / 162 ms = 0.73 (Pixel-1, Table 6)'),
    dict(key='lraspp_v3_vs_raspp_v2', label='LR-ASPP V3 (T7 row 8) / R-ASPP V2 (row 1)',
         num=(LRASPP_V3, 'eager'), den=(RASPP_V2, 'eager'), same_backend=True,
         target=0.63, target_size=SEG_SIZE,
         paper='2.47 s / 3.90 s = 0.63 (Pixel-3, 1024x2048)'),
    dict(key='lraspp_v3_vs_mmseg_lraspp', label="LR-ASPP V3 / mmseg's stock LR-ASPP",
         num=(LRASPP_V3, 'eager'), den=(MMSEG_LRASPP, 'eager'), same_backend=True),
    dict(key='ssdlite_v3_reduced_vs_torchvision',
         label="SSDLite V3† / torchvision's ssdlite320",
         num=(V3_REDUCED, 'eager'), den=(TV_SSDLITE, 'eager'), same_backend=True),
    dict(key='ssdlite_v3_reduced_fused_vs_eager', label='SSDLite V3†: BN folded / eager',
         num=(V3_REDUCED, 'fused'), den=(V3_REDUCED, 'eager')),
    dict(key='ssdlite_v3_reduced_ort_vs_eager',
         label='SSDLite V3†: onnxruntime fp32 / eager',
         num=(V3_REDUCED, 'ort'), den=(V3_REDUCED, 'eager')),
    dict(key='ssdlite_v3_reduced_int8_vs_fp32',
         label='SSDLite V3†: onnxruntime int8 / fp32',
         num=(V3_REDUCED, 'ort-int8'), den=(V3_REDUCED, 'ort'), fidelity=V3_REDUCED),
    dict(key='lraspp_v3_ort_vs_eager', label='LR-ASPP V3: onnxruntime fp32 / eager',
         num=(LRASPP_V3, 'ort'), den=(LRASPP_V3, 'eager')),
    dict(key='lraspp_v3_int8_vs_fp32', label='LR-ASPP V3: onnxruntime int8 / fp32',
         num=(LRASPP_V3, 'ort-int8'), den=(LRASPP_V3, 'ort'), fidelity=LRASPP_V3),
)


class BenchmarkError(ValueError):
    """A bad request (unknown model, input size a model cannot take, ...)."""


@dataclass
class Entry:
    """One model to measure."""
    name: str  # model-index name or peer key
    short: str  # label in the plot
    source: str  # 'ours', 'mmdet', 'mmseg' or 'torchvision'
    task: str  # 'detection' or 'segmentation'
    config: Optional[str] = None  # config path (None: torchvision)
    cfg_options: dict = field(default_factory=dict)
    paper: Optional[dict] = None  # {'Table': .., 'Row': ..}
    accuracy: Optional[dict] = None  # value, metric, dataset, source


def _pkg_configs(package: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).parent / '.mim' / 'configs'


def _peer_accuracy(key: str) -> Optional[dict]:
    """The published accuracy of a peer's trained weights (None if not found)."""
    source, name = key.split(':', 1)
    if source == 'torchvision':
        from torchvision.models.detection import \
            SSDLite320_MobileNet_V3_Large_Weights as Weights
        metrics = Weights.COCO_V1.meta['_metrics']
        for dataset, values in metrics.items():
            return dict(value=float(values['box_map']), metric='box AP',
                        dataset=dataset, source="torchvision weights metadata "
                        '(SSDLite320_MobileNet_V3_Large_Weights.COCO_V1)')
        return None
    import yaml
    folder = _pkg_configs(source) / Path(PEERS[key]['config']).parent
    for path in sorted(folder.glob('metafile.y*ml')):
        data = yaml.safe_load(path.read_text()) or {}
        for model in data.get('Models', []):
            if model.get('Name') != name:
                continue
            results = model.get('Results')
            results = results if isinstance(results, list) else [results]
            for result in results:
                for metric in ('box AP', 'mIoU'):
                    value = (result or {}).get('Metrics', {}).get(metric)
                    if value is not None:
                        return dict(value=float(value), metric=metric,
                                    dataset=result.get('Dataset'),
                                    source=f'{source} metafile '
                                    f'({path.relative_to(path.parents[2])})')
    return None


def _task_of(cfg, name: str) -> str:
    model = cfg.model
    if 'decode_head' in model:
        return 'segmentation'
    if 'bbox_head' in model:
        return 'detection'
    raise BenchmarkError(f'{name}: builds a {model.get("type")}, neither a detector nor '
                         'a segmentor; the benchmark measures detection and '
                         'segmentation configs')


def resolve(name: str, global_pool: bool = False) -> Entry:
    """An :class:`Entry` for a model-index name, a config path or a peer key
    (``mmdet:...``, ``mmseg:...``, ``torchvision:...``; ``mmdet``, ``mmseg`` and
    ``torchvision`` alone name the one peer of that source)."""
    from mobilenet_tasks.utils.config import load_config
    from mobilenet_tasks.utils.model_index import find_entry, load_model_index
    peers = {k.split(':')[0]: k for k in PEERS}
    key = peers.get(name, name)
    if key in PEERS:
        peer = PEERS[key]
        source = key.split(':')[0]
        config = None if peer['config'] is None else \
            str(_pkg_configs(source) / peer['config'])
        options = {'model.pretrained': None} if source == 'mmseg' else {}
        return Entry(name=key, short=peer['short'], source=source, task=peer['task'],
                     config=config, cfg_options=options, accuracy=_peer_accuracy(key))
    index = None
    if os.path.isfile(name):
        config = os.path.abspath(name)
        index = find_entry(config)
    else:
        for entry in load_model_index():
            if entry['Name'] == name:
                index, config = entry, entry['Config']
                break
        else:
            raise BenchmarkError(
                f'{name}: neither a config file, a model-index name (model-index.yml) '
                f'nor a peer ({", ".join(PEERS)})')
    cfg = load_config(config)
    task = _task_of(cfg, name)
    options = {}
    head = cfg.model.get('decode_head', {})
    if global_pool and str(head.get('type', '')).endswith('mobilenet_tasks.LRASPPHead'):
        options['model.decode_head.global_pool'] = True
    paper = (index or {}).get('Paper')
    accuracy = None
    if paper:
        table, row = str(paper['Table']), str(paper['Row'])
        if (table, row) in PAPER_ACCURACY:
            metric, dataset = PAPER_METRIC[table]
            accuracy = dict(value=PAPER_ACCURACY[table, row], metric=metric,
                            dataset=dataset, source=f"the paper's Table {table}, {row}")
    short = Path(config).stem
    if paper:
        table, row = str(paper['Table']), str(paper['Row'])
        short = {'6': f'SSDLite {row}', '7': f'{TABLE7_ROWS.get(row, row)} (T7 {row})',
                 '8': f'LR-ASPP {row}'}.get(table, row)
    return Entry(name=(index or {}).get('Name', Path(config).stem), short=short,
                 source='ours', task=task, config=config, cfg_options=options,
                 paper=dict(paper) if paper else None, accuracy=accuracy)


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
def _quiet_mmengine():
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

    from mobilenet_tasks.deployment.onnx_export import (DetectorRawOutputs,
                                                        SegmentorLogits)
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


# ---------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------
def fold_bn(module: nn.Module):
    """``(copy of module with every BN folded into its conv, FuseReport)``
    (:func:`mobilenet_tasks.deployment.fuse.fuse_conv_bn`)."""
    from mobilenet_tasks.deployment.fuse import fuse_conv_bn
    module = copy.deepcopy(module).eval()
    report = fuse_conv_bn(module)
    return module, report


def export_onnx(built: Built, size, out_path: Path) -> str:
    """Export the timed graph of ``built`` (its very weights) to ONNX fp32 with
    :func:`mobilenet_tasks.deployment.onnx_export.export_loaded` (detection: the raw
    head outputs, ``nms=False``); NotImplementedError where there is no exporter."""
    from mobilenet_tasks.deployment import onnx_export
    entry = built.entry
    if entry.source == 'torchvision':
        raise NotImplementedError('the project exports mmdet / mmseg models only')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return onnx_export.export_loaded(built.raw, built.cfg, {}, entry.config,
                                         out_path, tuple(size), nms=False)


def calibration_config(cfg, size):
    """``cfg`` with its test resize set to exactly ``size`` (H, W), so that
    :func:`~mobilenet_tasks.deployment.quantize.quantize_model` preprocesses the
    calibration images to the size the graph was exported for."""
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
    """:func:`mobilenet_tasks.deployment.quantize.quantize_model` of the fp32 graph
    (the project's recipe: QDQ, int8 weights per channel and uint8 activations, MinMax,
    post-processing kept float), calibrated on ``images``; returns a summary."""
    from mobilenet_tasks.deployment.quantize import quantize_model
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
    from mobilenet_tasks.deployment.ort_model import cpu_session
    return cpu_session(path, threads, denormals_as_zero=True)


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


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------
@dataclass
class Runner:
    name: str
    backend: str
    run: Callable[[], object]
    times: List[float] = field(default_factory=list)


def _torch_runner(name, backend, module, x) -> Runner:
    def run():
        with torch.inference_mode():
            return module(x)
    return Runner(name, backend, run)


def _ort_runner(name, backend, session, array) -> Runner:
    feed = {session.get_inputs()[0].name: array}
    return Runner(name, backend, lambda: session.run(None, feed))


def time_runners(runners: List[Runner], warmup: int, repeats: int) -> None:
    """Warm every runner up, then time each once per round, rotating the order."""
    for _ in range(warmup):
        for runner in runners:
            runner.run()
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            k = r % len(runners)
            for runner in runners[k:] + runners[:k]:
                start = time.perf_counter()
                runner.run()
                runner.times.append(time.perf_counter() - start)
    finally:
        gc.enable()


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    models: Sequence[str] = DEFAULT_MODELS
    peers: Sequence[str] = tuple(PEERS)
    backends: Sequence[str] = BACKENDS
    peer_backends: Sequence[str] = ('eager', 'fused', 'ort')
    det_size: Tuple[int, int] = DET_SIZE
    seg_size: Tuple[int, int] = SEG_SIZE
    threads: Sequence[int] = ()  # default: 1 and os.cpu_count()
    warmup: int = 2
    repeats: int = 10
    calib: int = 4  # random-noise images to calibrate int8 on
    global_pool: bool = False
    ratio_runners_only: bool = False  # time only what the ratio rows use (+ eager)
    quick: bool = False
    work_dir: str = 'work_dirs/benchmark'
    log: Callable[[str], None] = field(default=lambda msg: _log(msg))


_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f'[{time.perf_counter() - _T0:7.1f} s] {msg}', file=sys.stderr, flush=True)


def quick_settings(**overrides) -> Settings:
    """The settings of ``--quick``: the models of the ratio rows at small inputs, only
    the backends those rows use (and eager), one warm-up and one timed round."""
    values = dict(models=QUICK_MODELS, det_size=QUICK_DET_SIZE, seg_size=QUICK_SEG_SIZE,
                  warmup=1, repeats=1, calib=1, global_pool=True,
                  ratio_runners_only=True, quick=True)
    values.update(overrides)
    return Settings(**values)


def _check_settings(s: Settings) -> List[int]:
    bad = [b for b in list(s.backends) + list(s.peer_backends) if b not in BACKENDS]
    if bad:
        raise BenchmarkError(f'unknown backend(s) {bad}; known: {list(BACKENDS)}')
    for label, size in (('det size', s.det_size), ('seg size', s.seg_size)):
        if len(size) != 2 or min(size) < 32:
            raise BenchmarkError(f'{label} must be two ints >= 32 (H W), got {size}')
    if s.warmup < 0 or s.repeats < 1 or s.calib < 1:
        raise BenchmarkError(f'warm-up >= 0, repeats >= 1 and calib >= 1 needed, got '
                             f'{s.warmup}, {s.repeats}, {s.calib}')
    threads = sorted(set(s.threads or (1, os.cpu_count() or 1)))
    if not threads or threads[0] < 1:
        raise BenchmarkError(f'thread counts must be >= 1, got {list(s.threads)}')
    return threads


def _size_hint(entry: Entry, size) -> str:
    if entry.task != 'segmentation':
        return f'use a larger --det-size than {size[0]} {size[1]}'
    if entry.source == 'mmseg':
        return ("mmseg's LR-ASPP pools 49x49 on its output-stride-8 map: it needs "
                'inputs of at least 385x385 (e.g. --seg-size 512 1024)')
    return ("the paper's LR-ASPP gate pools 49x49 on the output-stride-16 map: it needs "
            'inputs of at least 769x769 (the paper measures 1024 2048); pass '
            '--global-pool to run our LR-ASPP heads with global pooling at smaller '
            'sizes')


def run_benchmark(settings: Settings) -> dict:
    """Measure every model of ``settings`` and return the report (see the module doc
    and :func:`format_report`).

    Raises:
        BenchmarkError: An unknown model or backend, a bad size or count, or an input
            size a model cannot take (checked before anything is timed).
    """
    torch_threads = torch.get_num_threads()
    try:
        with _quiet_mmengine():
            return _run_benchmark(settings)
    finally:
        torch.set_num_threads(torch_threads)
        torch.set_flush_denormal(False)


def _run_benchmark(s: Settings) -> dict:
    threads = _check_settings(s)
    log = s.log
    started = time.perf_counter()
    entries, seen = [], set()
    for name in s.models:
        entry = resolve(name, s.global_pool)
        if entry.name not in seen:
            entries.append(entry)
            seen.add(entry.name)
    tasks = {e.task for e in entries}
    for name in s.peers:
        entry = resolve(name)
        if entry.source == 'ours':
            raise BenchmarkError(f'{name}: not a peer; peers: {", ".join(PEERS)}')
        if entry.task in tasks and entry.name not in seen:
            entries.append(entry)
            seen.add(entry.name)
    sizes = {'detection': tuple(s.det_size), 'segmentation': tuple(s.seg_size)}

    work_dir = Path(s.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    flush = torch.set_flush_denormal(True)
    load_before = _load_average()

    # Build everything and check the sizes first: fail before any long measurement.
    built = {}
    for entry in entries:
        log(f'building {entry.name}')
        built[entry.name] = build(entry)
    errors = []
    for entry in entries:
        size = sizes[entry.task]
        reason = check_size(built[entry.name], size)
        if reason:
            errors.append(f'{entry.name} cannot take a {size[0]}x{size[1]} input '
                          f'({reason}); {_size_hint(entry, size)}')
    if errors:
        raise BenchmarkError('\n'.join(errors))

    models = {}
    for entry in entries:
        size = sizes[entry.task]
        b = built[entry.name]
        log(f'counting {entry.name} at {size[0]}x{size[1]}')
        from mobilenet_tasks.utils.complexity import count_complexity
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            counts = count_complexity(b.timed, size)
        paper = entry.paper or {}
        key = (str(paper.get('Table')), str(paper.get('Row')))
        models[entry.name] = dict(
            name=entry.name, short=entry.short, source=entry.source, task=entry.task,
            config=_display_path(entry.config),
            overrides=entry.cfg_options, paper_row=paper or None,
            input_size=list(size), params=int(counts['params']),
            madds=float(counts['madds']), accuracy=entry.accuracy,
            paper_latency_ms=PAPER_LATENCY_MS.get(key),
            latency_ms={}, runs_ms={}, skipped={}, int8_fidelity=None)

    for task in ('detection', 'segmentation'):
        task_entries = [e for e in entries if e.task == task]
        if task_entries:
            _measure_task(task_entries, built, models, sizes[task], threads, s, work_dir)

    ratios = compute_ratios(models, threads)
    import onnxruntime
    return dict(
        date=datetime.datetime.now().isoformat(timespec='seconds'),
        machine=dict(cpu=_cpu_name(), cpu_count=os.cpu_count(),
                     platform=platform.platform(), python=platform.python_version(),
                     torch=torch.__version__, onnxruntime=onnxruntime.__version__,
                     load_average_before=load_before,
                     load_average_after=_load_average()),
        warnings=_busy_machine_warnings(models, threads),
        settings=dict(quick=s.quick, threads=threads, warmup=s.warmup,
                      repeats=s.repeats, det_size=list(s.det_size),
                      seg_size=list(s.seg_size), global_pool=s.global_pool,
                      backends=list(s.backends), peer_backends=list(s.peer_backends),
                      ratio_runners_only=s.ratio_runners_only,
                      onnxruntime_session='CPUExecutionProvider, intra_op_num_threads = '
                      'the thread count, inter_op_num_threads 1, sequential, denormals '
                      'as zero, default graph optimisations and spinning',
                      int8_calibration=f'{s.calib} random-noise image(s) through '
                      "the config's normalisation (enough for latency, not for "
                      'accuracy); quantize_model: QDQ, int8 weights per channel, uint8 '
                      'activations, MinMax, post-processing float',
                      weights='random (the configs\' initialisation)',
                      denormals_flushed=bool(flush)),
        what_is_timed=WHAT_IS_TIMED,
        models=list(models.values()),
        ratios=ratios,
        seconds=round(time.perf_counter() - started, 1))


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _busy_machine_warnings(models: Dict[str, dict], threads: Sequence[int]
                           ) -> List[str]:
    """Signs that other processes competed for the cores: a runner slower on all
    threads than on one (on an idle machine more threads never cost 1.5x)."""
    if len(threads) < 2:
        return []
    slow = []
    for m in models.values():
        for backend, per_thread in m['latency_ms'].items():
            one, most = per_thread.get('1'), per_thread.get(str(threads[-1]))
            if one and most and most > 1.5 * one:
                slow.append(f'{m["name"]} {backend} ({_ms(one)} -> {_ms(most)} ms)')
    if not slow:
        return []
    return [f'{len(slow)} runner(s) were over 1.5x slower on {threads[-1]} threads than '
            f'on 1: {"; ".join(slow[:4])}{"; ..." if len(slow) > 4 else ""}. Other '
            'processes were competing for the cores (a thread that waits for a busy '
            'core stalls every parallel region): the multi-thread figures of this run '
            'are not usable; run on an idle machine.']


def _display_path(path: Optional[str]) -> Optional[str]:
    """A config path relative to the checkout or the site-packages it is in."""
    if path is None:
        return None
    from mobilenet_tasks.utils.model_index import ROOT
    path = Path(path).resolve()
    for base in (ROOT, Path(np.__file__).resolve().parents[1]):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def _cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor()


def _measure_task(entries, built, models, size, threads, s: Settings, work_dir):
    """Prepare the backends of one task's models, then time them interleaved, for each
    thread count."""
    log = s.log
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *size, generator=gen)
    array = x.numpy()
    images = None
    modules, onnx_files = {}, {}
    needed = {side for spec in RATIOS for side in (spec['num'], spec['den'])}
    for entry in entries:
        record = models[entry.name]
        backends = s.backends if entry.source == 'ours' else s.peer_backends
        if s.ratio_runners_only:
            backends = [b for b in backends if b == 'eager' or (entry.name, b) in needed]
        timed = built[entry.name].timed
        for backend in backends:
            if backend == 'eager':
                modules[entry.name, backend] = timed
            elif backend == 'fused':
                fused, report = fold_bn(timed)
                record['bn_folded'] = report.num_folded
                record['bn_left'] = dict(report.left)
                modules[entry.name, backend] = fused
        if {'ort', 'ort-int8'} & set(backends):
            stem = f'{entry.name.replace(":", "_")}_{size[0]}x{size[1]}'
            log(f'exporting {entry.name} to ONNX')
            try:
                fp32 = export_onnx(built[entry.name], size, work_dir / f'{stem}.onnx')
            except NotImplementedError as e:
                for backend in {'ort', 'ort-int8'} & set(backends):
                    record['skipped'][backend] = str(e)
                continue
            if 'ort' in backends:
                onnx_files[entry.name, 'ort'] = fp32
            if 'ort-int8' in backends:
                log(f'quantizing {entry.name} to int8')
                images = images or calibration_images(work_dir / 'calibration', size,
                                                      s.calib)
                record['int8'] = quantize_int8(built[entry.name], fp32, str(
                    work_dir / f'{stem}_int8.onnx'), size, images)
                onnx_files[entry.name, 'ort-int8'] = record['int8']['path']

    for n in threads:
        torch.set_num_threads(n)
        runners = [_torch_runner(name, backend, module, x)
                   for (name, backend), module in modules.items()]
        sessions = {k: ort_session(path, n) for k, path in onnx_files.items()}
        log(f'{len(sessions)} onnxruntime sessions ready')
        runners += [_ort_runner(name, backend, session, array)
                    for (name, backend), session in sessions.items()]
        order = {e.name: i for i, e in enumerate(entries)}
        runners.sort(key=lambda r: (order[r.name], BACKENDS.index(r.backend)))
        if n == threads[0]:
            for entry in entries:  # int8 against fp32, on the benchmark's input
                k32, k8 = (entry.name, 'ort'), (entry.name, 'ort-int8')
                if k32 in sessions and k8 in sessions:
                    feed = {sessions[k32].get_inputs()[0].name: array}
                    models[entry.name]['int8_fidelity'] = fidelity(
                        sessions[k32].run(None, feed), sessions[k8].run(None, feed),
                        entry.task)
        log(f'timing {len(runners)} runners at {size[0]}x{size[1]}, {n} thread(s): '
            f'{s.warmup} warm-up + {s.repeats} rounds')
        time_runners(runners, s.warmup, s.repeats)
        for runner in runners:
            runs = [round(t * 1000, 3) for t in runner.times]
            record = models[runner.name]
            record['runs_ms'].setdefault(runner.backend, {})[str(n)] = runs
            record['latency_ms'].setdefault(runner.backend, {})[str(n)] = round(
                statistics.median(runs), 3)
        del runners, sessions
        gc.collect()
        log('timed')


def compute_ratios(models: Dict[str, dict], threads: Sequence[int]) -> List[dict]:
    """The ratio rows (:data:`RATIOS`) from the medians of one run.

    Every spec gives a row keyed ``key`` (None values where a side was not measured,
    ``missing`` says which); a ``same_backend`` spec also gives a row keyed
    ``key:backend`` for every other backend measured on both sides. ``value`` is the
    ratio at one thread (what a target is checked on), ``values`` at every thread count.
    """
    rows = []
    for spec in RATIOS:
        (num, num_backend), (den, den_backend) = spec['num'], spec['den']
        rows.append(_ratio_row(spec, models, threads, num_backend, den_backend,
                               spec['key'], spec['label'] + (
                                   f' ({BACKEND_LABELS[num_backend]})'
                                   if spec.get('same_backend') else '')))
        if not spec.get('same_backend'):
            continue
        for backend in BACKENDS:
            if backend != num_backend and all(
                    models.get(name, {}).get('latency_ms', {}).get(backend)
                    for name in (num, den)):
                rows.append(_ratio_row(spec, models, threads, backend, backend,
                                       f'{spec["key"]}:{backend}',
                                       f'{spec["label"]} ({BACKEND_LABELS[backend]})'))
    return rows


def _ratio_row(spec, models, threads, num_backend, den_backend, key, label) -> dict:
    num, den = spec['num'][0], spec['den'][0]
    values, missing = {}, []
    for name, backend in ((num, num_backend), (den, den_backend)):
        if not models.get(name, {}).get('latency_ms', {}).get(backend):
            reason = models.get(name, {}).get('skipped', {}).get(backend)
            missing.append(f'{name} {backend}' + (f' ({reason})' if reason else
                                                  ' (not measured)'))
    if not missing:
        for n in threads:
            a = models[num]['latency_ms'][num_backend].get(str(n))
            b = models[den]['latency_ms'][den_backend].get(str(n))
            values[str(n)] = round(a / b, 4) if a and b else None
    value = values.get('1')
    target = spec.get('target')
    row = dict(key=key, label=label, numerator=[num, num_backend],
               denominator=[den, den_backend], value=value, values=values,
               target=target, paper=spec.get('paper'),
               ok=None if value is None or target is None else value <= target,
               missing=missing or None)
    if spec.get('target_size') and not missing:
        size = models[num]['input_size']
        if tuple(size) != tuple(spec['target_size']):
            row['note'] = (f'measured at {size[0]}x{size[1]}; the target is at '
                           f'{spec["target_size"][0]}x{spec["target_size"][1]}')
    if spec.get('fidelity') and spec['fidelity'] in models:
        row['int8_fidelity'] = models[spec['fidelity']].get('int8_fidelity')
    return row


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------
def _ms(v) -> str:
    if v is None:
        return '-'
    return f'{v:.0f}' if v >= 100 else f'{v:.1f}' if v >= 10 else f'{v:.2f}'


def format_report(report: dict) -> str:
    """The report as markdown tables."""
    threads = report['settings']['threads']
    lines = []
    for task in ('detection', 'segmentation'):
        rows = [m for m in report['models'] if m['task'] == task]
        if not rows:
            continue
        size = rows[0]['input_size']
        lines.append(f'### {task} at {size[0]}x{size[1]}: latency ms, median of '
                     f'{report["settings"]["repeats"]} (threads '
                     f'{" / ".join(map(str, threads))})\n')
        lines.append(f'Timed: {report["what_is_timed"][task]}.\n')
        head = ['model', 'source', 'params M', 'MAdds B', 'accuracy'] + [
            BACKEND_LABELS[b] for b in BACKENDS]
        lines.append('| ' + ' | '.join(head) + ' |')
        lines.append('|' + '---|' * len(head))
        for m in rows:
            acc = m['accuracy']
            acc_text = '-' if not acc else f'{acc["value"]:.1f} {acc["metric"]}' + (
                ' (paper)' if m['source'] == 'ours' else '')
            cells = [m['name'], m['source'], f'{m["params"] / 1e6:.3f}',
                     f'{m["madds"] / 1e9:.3f}', acc_text]
            for backend in BACKENDS:
                latency = m['latency_ms'].get(backend)
                if latency:
                    cells.append(' / '.join(_ms(latency.get(str(n))) for n in threads))
                elif backend in m['skipped']:
                    cells.append('n/a')
                else:
                    cells.append('-')
            lines.append('| ' + ' | '.join(cells) + ' |')
        skipped = {(m['name'], b): r for m in rows for b, r in m['skipped'].items()}
        for (name, backend), reason in skipped.items():
            lines.append(f'\nn/a: {name} {backend}: {reason}')
        lines.append('')
    lines.append('### Ratios within this run (lower = faster numerator)\n')
    head = ['ratio'] + [f'{n} thread{"s" if n > 1 else ""}' for n in threads] + [
        'target (1 thread)', 'paper']
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for r in report['ratios']:
        cells = [r['label']] + [
            '-' if r['values'].get(str(n)) is None else f'{r["values"][str(n)]:.3f}'
            for n in threads]
        if r['target'] is None:
            cells.append('report')
        else:
            verdict = '' if r['ok'] is None else (' ok' if r['ok'] else ' MISSED')
            cells.append(f'<= {r["target"]}{verdict}')
        cells.append(r['paper'] or '')
        lines.append('| ' + ' | '.join(cells) + ' |')
    for r in report['ratios']:
        if r.get('missing'):
            lines.append(f'\n{r["label"]}: not computed, missing '
                         + '; '.join(r['missing']))
        if r.get('note'):
            lines.append(f'\n{r["label"]}: {r["note"]}')
        fid = r.get('int8_fidelity')
        if fid:
            text = (f'max abs diff {fid["max_abs_diff"]:.3g} (output scale '
                    f'{fid["scale"]:.3g}), cosine {fid["cosine"]:.4f}')
            if 'argmax_agreement' in fid:
                text += f', same label on {fid["argmax_agreement"]:.1%} of pixels'
            lines.append(f'\n{r["label"]}: int8 vs fp32 outputs on the benchmark input: '
                         f'{text} (random weights: a check of the quantized graph, not '
                         'an accuracy; the accuracy change needs trained weights and '
                         'the dataset)')
    for warning in report.get('warnings') or []:
        lines.append(f'\n**Warning**: {warning}')
    st = report['settings']
    lines.append(f'\nWeights {st["weights"]}; int8 calibration: {st["int8_calibration"]}'
                 f'; denormals flushed: {st["denormals_flushed"]}; '
                 f'{st["warmup"]} warm-up rounds, runners interleaved. Machine: '
                 f'{report["machine"]["cpu"]}, {report["machine"]["cpu_count"]} cores, '
                 f'load average {report["machine"]["load_average_before"]} before, '
                 f'{report["machine"]["load_average_after"]} after; '
                 f'torch {report["machine"]["torch"]}, onnxruntime '
                 f'{report["machine"]["onnxruntime"]}. {report["seconds"]} s.')
    if st['global_pool']:
        lines.append('Our LR-ASPP heads ran with global pooling (--global-pool), not '
                     "the paper's 49x49 pool.")
    return '\n'.join(lines)


def plot_figure1(report: dict, path, backend: str = 'eager', threads: int = 1) -> str:
    """Accuracy against latency (the paper's Figure 1, for the models measured): one
    panel a task; ours at the paper's accuracy, peers at their published accuracy."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    tasks = [t for t in ('detection', 'segmentation')
             if any(m['task'] == t for m in report['models'])]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 5.2),
                             squeeze=False)
    style = {'ours': ('o', 'C0', 'ours (accuracy: the paper\'s)'),
             'mmdet': ('s', 'C1', 'mmdet (published accuracy)'),
             'mmseg': ('^', 'C2', 'mmseg (published accuracy)'),
             'torchvision': ('D', 'C3', 'torchvision (published accuracy)')}
    for ax, task in zip(axes[0], tasks):
        rows = [m for m in report['models'] if m['task'] == task]
        size = rows[0]['input_size']
        left_out, labelled, xmax = [], set(), 0.0
        for m in rows:
            latency = m['latency_ms'].get(backend, {}).get(str(threads))
            if latency is None or not m['accuracy']:
                left_out.append(m['short'])
                continue
            marker, color, label = style[m['source']]
            ax.scatter(latency, m['accuracy']['value'], marker=marker, color=color,
                       s=48, label=None if m['source'] in labelled else label, zorder=3)
            labelled.add(m['source'])
            xmax = max(xmax, latency)
            ax.annotate(m['short'], (latency, m['accuracy']['value']),
                        textcoords='offset points', xytext=(5, 4), fontsize=8)
        ours = [m for m in rows if m['source'] == 'ours' and m['accuracy']]
        metric = 'mAP' if task == 'detection' else 'mIoU'
        datasets = sorted({m['accuracy']['dataset'] for m in ours})
        ax.set_ylabel(f'{metric} (%)')
        ax.set_xlabel(f'latency (ms) measured here: {BACKEND_LABELS[backend]}, '
                      f'{threads} thread, {size[0]}x{size[1]}')
        ax.set_title(f'{task}: ours at the paper\'s {metric} '
                     f'({", ".join(datasets) or "-"}), peers at their published one',
                     fontsize=9)
        ax.margins(y=0.15)
        ax.set_xlim(0, 1.3 * xmax or 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='best')
        if left_out:
            ax.text(0.01, 0.01, 'not plotted (no accuracy or latency): '
                    + ', '.join(left_out), transform=ax.transAxes, fontsize=7,
                    va='bottom')
    fig.suptitle('Accuracy vs latency, after Figure 1 of "Searching for MobileNetV3" '
                 f'({report["machine"]["cpu"]}, random weights for latency; accuracy '
                 'not measured here)', fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def save_json(report: dict, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return str(path)
