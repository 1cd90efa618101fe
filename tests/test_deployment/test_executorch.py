"""ExecuTorch programs (XNNPACK, float32 and PT2E int8): export, parity with PyTorch,
the runtime behind the backend layer (Inferencer, BackendModel, tools/test.py), the
delegation report and the messages for what cannot work.

Lowering a whole MobileNetV3 model to XNNPACK takes 30-60 s on 2 cores, so each
program is exported once, in module fixtures, and every test reads those.
"""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

pytest.importorskip('executorch')

from mobilenet_tasks.apis import Inferencer  # noqa: E402
from mobilenet_tasks.backends import (BackendError,  # noqa: E402
                                      choose_backend, open_backend, read_metadata)
from mobilenet_tasks.backends.base import RuntimeMissingError  # noqa: E402
from mobilenet_tasks.datasets.demo_cityscapes import draw_demo_street  # noqa: E402
from mobilenet_tasks.datasets.demo_coco import draw_demo_image  # noqa: E402
from mobilenet_tasks.deployment import compare_with_backend, load_model  # noqa: E402
from mobilenet_tasks.deployment.executorch_export import (  # noqa: E402
    DelegationError, export_executorch_loaded, float_module_names, lower_checked,
    static_input_shape)
from mobilenet_tasks.testing import load_tool, random_export_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')
SEG_SHAPE = (128, 256)  # small; the demo config's LR-ASPP pools globally


def _seg_config(tmp) -> str:
    """The demo segmentation config with its test resize giving SEG_SHAPE for 2:1
    images (the program, its calibration and tools/test.py all see that size)."""
    path = Path(tmp) / 'seg.py'
    path.write_text(
        f"_base_ = '{SEG}'\n"
        f"test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', "
        f"scale=({SEG_SHAPE[1]}, {SEG_SHAPE[0]}), keep_ratio=True), "
        "dict(type='LoadAnnotations'), dict(type='PackSegInputs')]\n"
        'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n'
        'val_dataloader = test_dataloader\n')
    return str(path)


@pytest.fixture(scope='module')
def segmentor(tmp_path_factory):
    """A random demo segmentor at 128x256: its checkpoint, the float32 program written
    by the tool, and an int8 program calibrated on two street scenes."""
    tmp = tmp_path_factory.mktemp('et_seg')
    config = _seg_config(tmp)
    ckpt, model, cfg, meta = random_export_checkpoint(config, tmp / 'w.pth')
    fp32 = tmp / 'seg.pte'
    tool = load_tool('tools/deployment/export_executorch.py')
    assert tool.main([config, ckpt, str(fp32)]) == 0  # the size from the config
    calib = tmp / 'calib'
    calib.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        cv2.imwrite(str(calib / f'{i}.png'), draw_demo_street(rng, (64, 128))[0])
    int8 = export_executorch_loaded(model, cfg, meta, config, tmp / 'seg_int8.pte',
                                    int8=True, images=str(calib))
    return dict(ckpt=ckpt, model=model, cfg=cfg, config=config, fp32=str(fp32),
                int8=int8, tmp=tmp)


@pytest.fixture(scope='module')
def detector(tmp_path_factory):
    """A random demo detector and its float32 program. Its config cuts no list
    (nms_pre, max_per_img): random weights crowd scores a rounding error apart at the
    cut, where PyTorch and ExecuTorch may keep different boxes."""
    tmp = tmp_path_factory.mktemp('et_det')
    config = tmp / 'det.py'
    config.write_text(f"_base_ = '{DET}'\n"
                      'model = dict(test_cfg=dict(nms_pre=100000, max_per_img=100000))\n')
    ckpt, model, cfg, meta = random_export_checkpoint(str(config), tmp / 'w.pth')
    report = export_executorch_loaded(model, cfg, meta, str(config), tmp / 'det.pte')
    return dict(ckpt=ckpt, model=model, report=report, config=str(config))


def test_segmentation_parity_and_metadata(segmentor):
    result = compare_with_backend(None, None, segmentor['fp32'],
                                  model=segmentor['model'])
    assert result['shape'] == (1, 19, *SEG_SHAPE)
    assert result['rel_diff'] < 1e-4, result
    assert result['argmax_agreement'] > 0.999
    meta = read_metadata(segmentor['fp32'])
    assert meta['task'] == 'segmentation' and meta['input_size'] == list(SEG_SHAPE)
    assert meta['output_names'] == ['logits'] and len(meta['class_names']) == 19
    assert 'quantization' not in meta
    runtime = open_backend(segmentor['fp32'], threads=1)
    assert runtime.name == 'executorch' and runtime.fixed_size == SEG_SHAPE
    assert runtime.fixed_batch == 1
    with pytest.raises(ValueError, match=r'exported for inputs of shape \(1, 3, 128, '
                       r'256\), got \(1, 3, 64, 64\)'):
        runtime.run(np.zeros((1, 3, 64, 64), np.float32))
    # outputs are copies: a second run does not overwrite the first one's arrays
    x = np.random.default_rng(0).standard_normal((1, 3, *SEG_SHAPE)).astype(np.float32)
    first = runtime.run(x)[0]
    kept = first.copy()
    runtime.run(np.zeros_like(x))
    assert np.array_equal(first, kept)


def test_detection_parity_and_predictions(detector):
    report = detector['report']
    assert not report.not_delegated, report
    assert report.delegated['aten_convolution_default'] > 50
    result = compare_with_backend(None, None, report.out_path, model=detector['model'])
    assert result['rel_diff'] < 1e-4, result
    meta = read_metadata(report.out_path)
    assert meta['task'] == 'detection' and meta['nms'] is False
    assert meta['input_size'] == [160, 160] and meta['num_levels'] == 6
    # BackendModel runs mmdet's own post-processing on the program's outputs: the
    # Inferencer gives PyTorch's detections
    rng = np.random.default_rng(0)
    images = [draw_demo_image(rng, size=160)[0], draw_demo_image(rng, size=200)[0]]
    config = detector['config']
    ref = Inferencer(config, detector['ckpt'], score_thr=0.3).predict(images)
    got = Inferencer(config, report.out_path, threads=1, score_thr=0.3).predict(images)
    from mobilenet_tasks.deployment.parity import _match_detections
    # compared above a cut in the widest gap of PyTorch's scores: a random model puts
    # hundreds of scores near any threshold, where a rounding error decides
    scores = np.sort(np.concatenate([r.scores for r in ref]))
    scores = scores[(scores > 0.4) & (scores < 0.7)]
    i = int(np.argmax(np.diff(scores)))
    cut = float(scores[i] + scores[i + 1]) / 2
    assert scores[i + 1] - scores[i] > 1e-3, 'no gap to compare above'
    for a, b in zip(ref, got):
        a, b = ([r.boxes[r.scores >= cut], r.scores[r.scores >= cut],
                 r.labels[r.scores >= cut]] for r in (a, b))
        assert len(a[1]) == len(b[1]) > 0
        # scores a rounding error apart may come in either order
        order = _match_detections(a, b)
        assert order is not None
        np.testing.assert_array_equal(a[2], b[2][order])
        np.testing.assert_allclose(a[1], b[1][order], atol=1e-4)
        np.testing.assert_allclose(a[0], b[0][order], atol=1e-2)


def test_int8_program(segmentor):
    report = segmentor['int8']
    meta = read_metadata(report.out_path)
    q = meta['quantization']
    assert q['quantizer'] == 'XNNPACKQuantizer' and q['calibration_images'] == 2
    assert q['per_channel'] is True and q['hswish'] == 'float'
    assert not report.not_delegated, report
    # integer kernels: quantize / dequantize nodes inside the delegate
    assert report.delegated['quantized_decomposed_quantize_per_tensor_default'] > 50
    assert report.file_bytes < 0.4 * Path(segmentor['fp32']).stat().st_size
    fp32 = open_backend(segmentor['fp32'], threads=1)
    int8 = open_backend(report.out_path, threads=1)
    image = draw_demo_street(np.random.default_rng(9), (64, 128))[0]
    from mobilenet_tasks.apis.preprocess import Preprocessor
    ((_, batch, _), ) = list(Preprocessor(segmentor['cfg'], segmentor['model'],
                                          'segmentation')([image]))
    x = batch.numpy()
    a, b = fp32.run(x)[0], int8.run(x)[0]
    # the int8 logits follow the float ones (a broken scale or zero point gives
    # noise: relative rms error near 1, argmax agreement near chance, 1/19)
    rel = np.sqrt(((a - b) ** 2).mean() / (a ** 2).mean())
    assert rel < 0.5, rel
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.5


def test_tools_test_on_pte(segmentor, tmp_path):
    """tools/test.py CONFIG model.pte gives the PyTorch checkpoint's mIoU."""
    from mobilenet_tasks.datasets import convert_cityscapes, make_demo_cityscapes
    make_demo_cityscapes(tmp_path / 'city', num_train=1, num_val=3,
                         image_size=SEG_SHAPE, seed=1)
    convert_cityscapes(tmp_path / 'city')
    config = tmp_path / 'cfg.py'
    config.write_text(
        f"_base_ = '{segmentor['config']}'\ndata_root = '{tmp_path / 'city'}'\n"
        "val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, "
        "dataset=dict(data_root=data_root))\n"
        'test_dataloader = val_dataloader\n')
    metrics = {}
    for name, weights in (('pth', segmentor['ckpt']), ('pte', segmentor['fp32'])):
        work = tmp_path / name
        proc = subprocess.run(
            [sys.executable, str(ROOT / 'tools/test.py'), str(config), weights,
             '--work-dir', str(work), '--runtime-threads', '1'],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        metrics[name] = json.loads((work / 'test_metrics.json').read_text())['metrics']
    assert metrics['pte'] == metrics['pth']
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/test.py'), str(config), segmentor['fp32'],
         '--backend', 'onnxruntime'], cwd=tmp_path, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode != 0
    assert "backend='onnxruntime' runs an exported .onnx file" in proc.stderr


def test_choose_backend_and_missing_runtime(segmentor, monkeypatch):
    assert choose_backend(None, 'x.pte') == 'executorch'
    with pytest.raises(BackendError, match='export_executorch.py'):
        choose_backend('executorch', segmentor['ckpt'])
    monkeypatch.setitem(sys.modules, 'executorch', None)
    with pytest.raises(RuntimeMissingError, match='pip install .*executorch'):
        open_backend(segmentor['fp32'])
    model, cfg, meta = segmentor['model'], None, {}
    with pytest.raises(RuntimeMissingError, match='ExecuTorch is not installed'):
        export_executorch_loaded(model, cfg, meta, SEG, 'x.pte', SEG_SHAPE)


def test_delegation_report_and_refusal(tmp_path):
    """An operator XNNPACK does not take is named; require_delegation refuses it."""

    class WithCumsum(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.cumsum(self.conv(x), dim=1)

    module = WithCumsum().eval()
    x = torch.zeros(1, 3, 16, 16)
    program, delegated, outside, _ = lower_checked(module, x, {}, False)
    assert delegated['aten_convolution_default'] == 1
    assert outside == {'aten_cumsum_default': 1}
    with pytest.raises(DelegationError, match=r'aten_cumsum_default \(1\)'):
        lower_checked(module, x, {}, True)


def test_recipe_parts_and_default_size():
    model, cfg, _ = load_model(DET)
    from mobilenet_tasks.deployment import DetectorRawOutputs
    names = float_module_names(DetectorRawOutputs(model), ('se', 'head'))
    assert sum('.se' in n for n in names) == 8  # V3-Large's SE blocks
    assert any(n.endswith('bbox_head') for n in names)
    with pytest.raises(ValueError, match='keep_float parts must be among'):
        float_module_names(model, ('gates', ))
    assert static_input_shape(cfg) == (160, 160)
    from mobilenet_tasks.utils.config import load_config
    assert static_input_shape(load_config(SEG)) == (256, 512)
    assert static_input_shape(load_config(
        str(ROOT / 'configs/lraspp_v3_large_cityscapes.py'))) == (1024, 2048)
