"""Every shipped config loads, builds and runs, and is listed once in the model index.

The configs are found on disk (``configs/**/*.py`` outside ``_base_`` folders), so
detection and segmentation configs added later are tested without touching this file.
Each model is fed through its own ``data_preprocessor`` on random uint8 images, as its
dataloader would feed it:

* classification (mmpretrain): 2 images of 64x64, ``mode='tensor'`` and a loss step;
* detection (mmdet): 1 image of 320x320, ``mode='tensor'``;
* segmentation (mmseg): 1 image of the preprocessor's crop ``size`` (what training pads
  every image to; 512x512 if none), ``mode='tensor'``.
"""
from functools import lru_cache
from pathlib import Path

import pytest
import torch
import yaml

from mobilenet_tasks.utils.config import build_model, load_config
from mobilenet_tasks.utils.model_index import load_model_index
from mobilenet_tasks.utils.paper import PAPER_TABLES

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs'


def shipped_configs():
    return sorted(
        path for path in CONFIG_DIR.rglob('*.py')
        if '_base_' not in path.relative_to(CONFIG_DIR).parts)


CONFIGS = shipped_configs()
CONFIG_IDS = [str(path.relative_to(CONFIG_DIR)) for path in CONFIGS]


@lru_cache()
def model_index():
    return tuple(load_model_index(ROOT))


def task_of(model):
    """'classification', 'detection' or 'segmentation', from the model's base class."""
    from mmdet.models.detectors import BaseDetector
    from mmpretrain.models.classifiers import BaseClassifier
    from mmseg.models.segmentors import BaseSegmentor

    for base, task in ((BaseClassifier, 'classification'), (BaseDetector, 'detection'),
                       (BaseSegmentor, 'segmentation')):
        if isinstance(model, base):
            return task
    raise AssertionError(f'{type(model).__name__} is not an mmpretrain classifier, '
                         'an mmdet detector or an mmseg segmentor: teach this test '
                         'how to feed it')


def random_images(num, height, width, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=gen)
            for _ in range(num)]


def packed_batch(model, task, with_labels=False):
    """Random uint8 images and data samples as the task's PackInputs would give them."""
    if task == 'classification':
        from mmpretrain.structures import DataSample

        num_classes = model.head.num_classes
        samples = [DataSample().set_gt_label(i % num_classes) for i in (3, 917)]
        return dict(inputs=random_images(2, 64, 64),
                    data_samples=samples if with_labels else None)
    if task == 'detection':
        from mmdet.structures import DetDataSample

        shape = (320, 320)
        samples = [DetDataSample(metainfo=dict(
            img_id=0, img_shape=shape, ori_shape=shape, pad_shape=shape,
            scale_factor=(1.0, 1.0)))]
        return dict(inputs=random_images(1, *shape), data_samples=samples)
    from mmseg.structures import SegDataSample

    shape = tuple(model.data_preprocessor.size or (512, 512))
    samples = [SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape,
                                           pad_shape=shape))]
    return dict(inputs=random_images(1, *shape), data_samples=samples)


def flat_tensors(outputs):
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (list, tuple)):
        return [t for out in outputs for t in flat_tensors(out)]
    if isinstance(outputs, dict):
        return [t for out in outputs.values() for t in flat_tensors(out)]
    return []


def check_tensor_forward(model):
    """Run ``mode='tensor'`` in eval mode on a preprocessed random batch; return task."""
    task = task_of(model)
    model.eval()
    data = model.data_preprocessor(packed_batch(model, task), False)
    with torch.no_grad():
        outputs = model(data['inputs'], data['data_samples'], mode='tensor')
    batch = data['inputs'].shape[0]
    if task == 'classification':
        assert outputs.shape == (batch, model.head.num_classes)
    elif task == 'segmentation':
        assert outputs.shape[:2] == (batch, model.decode_head.out_channels)
        # The decoder's stride: a few times smaller than the input, never larger.
        assert 1 <= data['inputs'].shape[-1] / outputs.shape[-1] <= 32
    tensors = flat_tensors(outputs)
    assert tensors, f'{task} forward returned no tensors: {type(outputs)}'
    for tensor in tensors:
        assert tensor.shape[0] == batch
        assert torch.isfinite(tensor).all()
    if task == 'detection':
        # Dense heads give (per-level class scores, per-level boxes, ...) at >= 1 level.
        assert len(tensors) >= 2
    return task


@pytest.mark.parametrize('config', CONFIGS, ids=CONFIG_IDS)
def test_config_builds_and_runs(config):
    cfg = load_config(str(config))
    assert 'model' in cfg, f'{config} has no model'
    model = build_model(cfg)
    task = check_tensor_forward(model)
    assert task in ('classification', 'detection', 'segmentation')
    if task != 'classification':
        return
    # A loss step: the loss is finite and its gradient reaches our backbone's stem.
    model.train()
    data = model.data_preprocessor(packed_batch(model, task, with_labels=True), True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    stem = dict(model.named_parameters())['backbone.layers.0.conv.weight']
    assert stem.grad is not None and stem.grad.abs().sum() > 0


def test_tensor_forward_helper_feeds_detectors_and_segmentors(tmp_path):
    """The path above for mmdet and mmseg models, exercised now (on stock configs with
    our backbone) so that it works when detection/segmentation configs land."""
    det = tmp_path / 'retinanet.py'
    det.write_text(
        "_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'\n"
        "model = dict(backbone=dict(_delete_=True, type='mobilenet_tasks.MobileNetV3',\n"
        "                           arch='small', out_indices=(1, 3, 8, 12)),\n"
        "             neck=dict(in_channels=[16, 24, 48, 576], out_channels=32),\n"
        # A slim head: this checks the feeding, not RetinaNet at 320x320.
        "             bbox_head=dict(in_channels=32, feat_channels=32, stacked_convs=1))\n")
    seg = tmp_path / 'deeplabv3plus.py'
    seg.write_text(
        "_base_ = 'mmseg::deeplabv3plus/"
        "deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py'\n"
        "model = dict(pretrained=None,\n"
        "             data_preprocessor=dict(size=(128, 160)),\n"
        "             backbone=dict(_delete_=True, type='mobilenet_tasks.MobileNetV3',\n"
        "                           arch='small', output_stride=16,\n"
        "                           out_indices=(1, 12)),\n"
        "             decode_head=dict(in_channels=576, in_index=1, c1_in_channels=16),\n"
        "             auxiliary_head=None)\n")
    assert check_tensor_forward(build_model(str(det))) == 'detection'
    assert check_tensor_forward(build_model(str(seg))) == 'segmentation'


# -- the model index -------------------------------------------------------------------
def test_configs_are_found():
    assert 'classification/mobilenet-v3-large_8xb128_in1k.py' in CONFIG_IDS
    assert len(CONFIGS) >= 8
    assert not any('_base_' in config_id for config_id in CONFIG_IDS)


@pytest.mark.parametrize('config', CONFIGS, ids=CONFIG_IDS)
def test_config_has_one_model_index_entry(config):
    matches = [entry for entry in model_index()
               if Path(entry['Config']).resolve() == config.resolve()]
    assert len(matches) == 1, (
        f'{config.relative_to(ROOT)} has {len(matches)} entries in the metafiles that '
        f'model-index.yml imports: {[m["Name"] for m in matches]}')


def test_model_index_metafiles():
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    metafiles = index['Import']
    assert metafiles
    for metafile in metafiles:
        models = yaml.safe_load((ROOT / metafile).read_text())['Models']
        assert models, f'{metafile} lists no models'
    names = [entry['Name'] for entry in model_index()]
    assert len(names) == len(set(names)), 'model names repeat across metafiles'


def test_metafile_config_paths_exist():
    entries = model_index()
    assert entries
    for entry in entries:
        path = Path(entry['Config'])
        assert path.is_file(), f'{entry["Name"]}: {path} does not exist'
        assert CONFIG_DIR in path.resolve().parents
        assert '_base_' not in path.parts


def test_paper_fields_name_known_table_rows():
    with_paper = [entry for entry in model_index() if 'Paper' in entry]
    assert len(with_paper) >= 7
    for entry in with_paper:
        table, row = str(entry['Paper']['Table']), str(entry['Paper']['Row'])
        assert table in PAPER_TABLES, f'{entry["Name"]}: no Table {table!r}'
        assert row in PAPER_TABLES[table][1], (
            f'{entry["Name"]}: Table {table} has no row {row!r}')
