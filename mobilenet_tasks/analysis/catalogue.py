"""What the benchmark measures: the backends, the input sizes, our models and the stock
peers, the ratio rows, and :func:`resolve`, which turns a name into an :class:`Entry`.

The paper's figures (accuracy, latency, Table 7's row names) are read from
:mod:`mobilenet_tasks.utils.paper`; the ratio targets are computed from its
``PAPER_LATENCY_MS`` rows.
"""
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mobilenet_tasks.utils.paper import (PAPER_ACCURACY, PAPER_LATENCY_MS,
                                          PAPER_METRIC, TABLE7_ROWS)

# PyTorch in this process (eager, BN folded), then the file runtimes, fp32 and int8
# (how each file is made and opened: :data:`.runtimes.FILE_BACKENDS`).
BACKENDS = ('eager', 'fused', 'ort', 'ort-int8', 'et', 'et-int8', 'ov', 'ov-int8')
BACKEND_LABELS = {'eager': 'PyTorch eager', 'fused': 'PyTorch, BN folded',
                  'ort': 'onnxruntime fp32', 'ort-int8': 'onnxruntime int8',
                  'et': 'ExecuTorch XNNPACK fp32', 'et-int8': 'ExecuTorch XNNPACK int8',
                  'ov': 'OpenVINO fp32', 'ov-int8': 'OpenVINO int8 (NNCF)'}
TORCH_BACKENDS = ('eager', 'fused')
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


def paper_ratio(num_row, den_row, where: str, unit: str = 'ms') -> dict:
    """``target`` and ``paper`` of a ratio row, from two ``PAPER_LATENCY_MS`` rows
    (``(table, row)`` keys): the paper's ratio to two decimals, and how it is got."""
    num, den = PAPER_LATENCY_MS[num_row], PAPER_LATENCY_MS[den_row]
    target = round(num / den, 2)
    text = (lambda v: f'{v} ms') if unit == 'ms' else (lambda v: f'{v / 1000:.2f} s')
    return dict(target=target, paper=f'{text(num)} / {text(den)} = {target} ({where})')


# Ratios computed within the run: numerator (model, backend) / denominator (model,
# backend). Rows between two models (``same_backend``) are given for eager and, as extra
# rows, for every other backend measured on both sides and on the numerator's fastest
# runtime; the target applies to each. ``quick=False``: not timed by ``--quick``.
RATIOS = (
    dict(key='ssdlite_v3_reduced_vs_mmdet_v2', label="SSDLite V3† / mmdet's SSDLite V2",
         num=(V3_REDUCED, 'eager'), den=(MMDET_SSDLITE, 'eager'), same_backend=True,
         **paper_ratio(('6', 'V3†'), ('6', 'V2'), 'Pixel-1, Table 6')),
    dict(key='lraspp_v3_vs_raspp_v2', label='LR-ASPP V3 (T7 row 8) / R-ASPP V2 (row 1)',
         num=(LRASPP_V3, 'eager'), den=(RASPP_V2, 'eager'), same_backend=True,
         target_size=SEG_SIZE,
         **paper_ratio(('7', '8'), ('7', '1'), f'Pixel-3, {SEG_SIZE[0]}x{SEG_SIZE[1]}',
                       unit='s')),
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
    dict(key='ssdlite_v3_reduced_et_int8_vs_fp32',
         label='SSDLite V3†: ExecuTorch int8 / fp32',
         num=(V3_REDUCED, 'et-int8'), den=(V3_REDUCED, 'et'), fidelity=V3_REDUCED),
    dict(key='ssdlite_v3_reduced_ov_int8_vs_fp32',
         label='SSDLite V3†: OpenVINO int8 / fp32',
         num=(V3_REDUCED, 'ov-int8'), den=(V3_REDUCED, 'ov'), fidelity=V3_REDUCED),
    dict(key='lraspp_v3_ort_vs_eager', label='LR-ASPP V3: onnxruntime fp32 / eager',
         num=(LRASPP_V3, 'ort'), den=(LRASPP_V3, 'eager')),
    dict(key='lraspp_v3_int8_vs_fp32', label='LR-ASPP V3: onnxruntime int8 / fp32',
         num=(LRASPP_V3, 'ort-int8'), den=(LRASPP_V3, 'ort'), fidelity=LRASPP_V3),
    # Not in --quick: exporting and calibrating LR-ASPP for two more runtimes would
    # double its length (the V3† rows above cover both runtimes there).
    dict(key='lraspp_v3_et_int8_vs_fp32', label='LR-ASPP V3: ExecuTorch int8 / fp32',
         num=(LRASPP_V3, 'et-int8'), den=(LRASPP_V3, 'et'), fidelity=LRASPP_V3,
         quick=False),
    dict(key='lraspp_v3_ov_int8_vs_fp32', label='LR-ASPP V3: OpenVINO int8 / fp32',
         num=(LRASPP_V3, 'ov-int8'), den=(LRASPP_V3, 'ov'), fidelity=LRASPP_V3,
         quick=False),
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


def _peer_entry(key: str) -> Entry:
    peer = PEERS[key]
    source = key.split(':')[0]
    config = None if peer['config'] is None else \
        str(_pkg_configs(source) / peer['config'])
    options = {'model.pretrained': None} if source == 'mmseg' else {}
    return Entry(name=key, short=peer['short'], source=source, task=peer['task'],
                 config=config, cfg_options=options, accuracy=_peer_accuracy(key))


def _our_config(name: str) -> str:
    """The config path of a config file or a model-index name."""
    from mobilenet_tasks.utils.config import resolve_config
    try:
        config = resolve_config(name)
    except ValueError as e:
        hint = str(e).partition('; ')[2] or str(e)
        raise BenchmarkError(
            f'{name}: neither a config file, a model-index name (model-index.yml) '
            f'nor a peer ({", ".join(PEERS)}); {hint}') from e
    return os.path.abspath(config)


def _task(cfg, name: str) -> str:
    from mobilenet_tasks.utils.task import TaskError, task_of_config
    try:
        return task_of_config(cfg, name)
    except TaskError as e:
        raise BenchmarkError(
            f'{name}: builds a {cfg.model.get("type")}, neither a detector nor a '
            'segmentor; the benchmark measures detection and segmentation '
            'configs') from e


def resolve(name: str, global_pool: bool = False) -> Entry:
    """An :class:`Entry` for a model-index name, a config path or a peer key
    (``mmdet:...``, ``mmseg:...``, ``torchvision:...``; ``mmdet``, ``mmseg`` and
    ``torchvision`` alone name the one peer of that source)."""
    from mobilenet_tasks.utils.config import load_config
    from mobilenet_tasks.utils.model_index import find_entry
    peers = {k.split(':')[0]: k for k in PEERS}
    key = peers.get(name, name)
    if key in PEERS:
        return _peer_entry(key)
    config = _our_config(name)
    index = find_entry(config)
    cfg = load_config(config)
    task = _task(cfg, name)
    options = {}
    head = cfg.model.get('decode_head', {})
    if global_pool and str(head.get('type', '')).endswith('mobilenet_tasks.LRASPPHead'):
        options['model.decode_head.global_pool'] = True
    paper = (index or {}).get('Paper')
    accuracy = None
    short = Path(config).stem
    if paper:
        table, row = str(paper['Table']), str(paper['Row'])
        if (table, row) in PAPER_ACCURACY:
            metric, dataset = PAPER_METRIC[table]
            accuracy = dict(value=PAPER_ACCURACY[table, row], metric=metric,
                            dataset=dataset, source=f"the paper's Table {table}, {row}")
        short = {'6': f'SSDLite {row}', '7': f'{TABLE7_ROWS.get(row, row)} (T7 {row})',
                 '8': f'LR-ASPP {row}'}.get(table, row)
    return Entry(name=(index or {}).get('Name', Path(config).stem), short=short,
                 source='ours', task=task, config=config, cfg_options=options,
                 paper=dict(paper) if paper else None, accuracy=accuracy)
