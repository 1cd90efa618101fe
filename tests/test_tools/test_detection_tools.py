"""SSDLite end to end: tools/train.py then tools/test.py on a tiny generated COCO set,
overfitting a handful of images, and the missing-dataset message."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mobilenet_tasks.datasets.demo_coco import make_demo_coco
from mobilenet_tasks.testing import tiny_ssdlite_config

ROOT = Path(__file__).resolve().parents[2]
ITERS, LR = 150, 3e-3  # overfitting 4 images

TINY_SCHEDULE = """
train_cfg = dict(max_iters={iters}, val_interval={iters})
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                        end=10)]
optim_wrapper = dict(optimizer=dict(lr={lr}))
default_hooks = dict(logger=dict(interval=5),
                     checkpoint=dict(interval={iters}, max_keep_ckpts=1))
randomness = dict(seed=0, deterministic=True)
"""


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    make_demo_coco(root, num_train=8, num_val=4, image_size=128, seed=3)
    return root


@pytest.fixture(scope='module')
def four_images(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco4')
    make_demo_coco(root, num_train=4, num_val=1, image_size=128, seed=5)
    return root


def _config(tmp_path, data, iters, lr=2e-3, train='train'):
    path = tmp_path / 'tiny.py'
    path.write_text(tiny_ssdlite_config(data, input_size=128, batch_size=4,
                                        train_split=train)
                    + TINY_SCHEDULE.format(iters=iters, lr=lr))
    return path


def _run(*args, cwd):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def test_train_then_test_through_the_tools(tmp_path, tiny_coco):
    config = _config(tmp_path, tiny_coco, iters=6)
    work = tmp_path / 'work'
    code, log = _run(ROOT / 'tools/train.py', config, '--work-dir', work, cwd=tmp_path)
    assert code == 0, log[-3000:]
    assert 'coco/bbox_mAP' in log  # the val step at the end of training ran
    checkpoint = work / 'iter_6.pth'
    assert checkpoint.is_file()
    out = tmp_path / 'preds.pkl'
    code, log = _run(ROOT / 'tools/test.py', config, checkpoint, '--work-dir', work,
                     '--out', out, '--show-dir', tmp_path / 'drawn', cwd=tmp_path)
    assert code == 0, log[-3000:]
    metrics = json.loads((work / 'test_metrics.json').read_text())['metrics']
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0  # a real pycocotools figure
    assert {'coco/bbox_mAP_50', 'coco/bbox_mAP_75'} <= set(metrics)
    import pickle
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 4
    assert predictions[0]['pred_instances']['bboxes'].shape[1] == 4
    drawn = list((tmp_path / 'drawn').rglob('*.jpg'))
    assert len(drawn) == 4


def test_overfitting_a_handful_of_images(tmp_path, four_images):
    """Train and validate on the same 4 images: the loss falls and the mAP rises.

    SSDLite from scratch learns slowly: measured here, 150 steps of batch 4 take the
    mean loss from about 13 to under 6 and the mAP from 0.002 to 0.023 (an untrained
    model scores 0.000-0.002). The assertions keep a margin below those figures.
    """
    tiny_coco = four_images
    cfg = Config.fromfile(_config(tmp_path, tiny_coco, iters=ITERS, lr=LR))
    cfg.val_dataloader.dataset.ann_file = 'annotations/instances_train.json'
    cfg.val_dataloader.dataset.data_prefix = dict(img='train/')
    cfg.val_evaluator.ann_file = str(tiny_coco / 'annotations/instances_train.json')
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    cfg.work_dir = str(tmp_path / 'overfit')
    runner = Runner.from_cfg(cfg)
    before = runner.val_loop.run()['coco/bbox_mAP']
    runner.train()
    after = runner.val_loop.run()['coco/bbox_mAP']
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()
    assert before < 0.01
    assert after >= 0.012 and after > 4 * before, (before, after)


def test_missing_coco_stops_at_once_with_directions(tmp_path):
    code, log = _run(ROOT / 'tools/train.py', ROOT / 'configs/ssdlite_v3_large_coco.py',
                     '--work-dir', tmp_path / 'w', cwd=tmp_path)
    assert code != 0
    assert str(tmp_path / 'data/coco/annotations/instances_train2017.json') in log
    assert 'cocodataset.org' in log and 'make demo' in log
    assert not (tmp_path / 'w').exists() or not list((tmp_path / 'w').rglob('*.pth'))
