"""OpenVINO behind the backend layer (mobilenet_tasks.backends.openvino) and its
exporter (mobilenet_tasks.deployment.openvino_export): fp32 parity with onnxruntime on
the .onnx and the converted .xml (segmentation, raw detection, the NMS graph), the
runtime choice, metadata, BackendModel, NNCF int8, the tool, a missing package."""
import argparse
import importlib
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mobilenet_tasks.backends import BackendError, choose_backend, open_backend
from mobilenet_tasks.backends import read_metadata as backend_metadata
from mobilenet_tasks.backends.base import RuntimeMissingError
from mobilenet_tasks.backends.model import BackendModel
from mobilenet_tasks.backends.onnxruntime import read_onnx_metadata
from mobilenet_tasks.backends.openvino import OpenVINO
from mobilenet_tasks.datasets.demo_cityscapes import draw_demo_street
from mobilenet_tasks.deployment.calibration import ImageCalibrationReader
from mobilenet_tasks.deployment.onnx_export import export_loaded, load_model
from mobilenet_tasks.deployment.onnx_graph import QuantizationError
from mobilenet_tasks.deployment.openvino_export import (OpenVINOExportError,
                                                        compare_backends,
                                                        convert_onnx, ir_op_counts,
                                                        quantize_openvino)
from mobilenet_tasks.testing import load_tool, randomize_

from test_quantize import SHAPE, _calm, _rms, _small_seg_config  # noqa: I100

ROOT = Path(__file__).resolve().parents[2]
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
DET_SHAPE = (160, 160)
FP32_TOL = 1e-4  # max abs difference relative to the output scale (floored at 1)


def _fp32_pair(onnx_path, tmp_path):
    """The .onnx and its converted .xml."""
    return onnx_path, convert_onnx(onnx_path, tmp_path / (Path(onnx_path).stem +
                                                          '.xml'))


@pytest.fixture(scope='module')
def seg(tmp_path_factory):
    """``(fp32 .onnx, its .xml, config)``: the demo segmentor with random weights
    (damped as test_quantize's, so that int8 follows it), exported at 64x128."""
    tmp = tmp_path_factory.mktemp('ov_seg')
    cfg = _small_seg_config()
    model, _, meta = load_model(cfg)
    _calm(model, seed=1, factor=0.95)
    onnx_path = export_loaded(model, cfg, meta, SEG, tmp / 'seg.onnx', SHAPE)
    return (*_fp32_pair(onnx_path, tmp), cfg)


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    """``(raw .onnx, raw .xml, nms .onnx, nms .xml)`` of a random demo detector whose
    class logits are a few units (no saturated, tied scores) and whose config cuts no
    list (a cut among scores a rounding error apart is arbitrary; see
    test_ort_model)."""
    tmp = tmp_path_factory.mktemp('ov_det')
    config = tmp / 'det.py'
    config.write_text(f"_base_ = '{DET}'\nmodel = dict(test_cfg=dict("
                      'nms_pre=100000, max_per_img=100000))\n')
    model, cfg, meta = load_model(str(config))
    randomize_(model, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for branch in list(model.bbox_head.cls_convs) + list(model.bbox_head.reg_convs):
            [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)
             ][-1].weight.mul_(0.2)
    raw = export_loaded(model, cfg, meta, config, tmp / 'raw.onnx', DET_SHAPE,
                        nms=False)
    nms = export_loaded(model, cfg, meta, config, tmp / 'nms.onnx', DET_SHAPE)
    return (*_fp32_pair(raw, tmp), *_fp32_pair(nms, tmp))


# -- fp32 parity ---------------------------------------------------------------------
@pytest.mark.parametrize('which', ['onnx', 'xml'])
def test_fp32_segmentation_and_raw_detection_equal_onnxruntime(seg, det, which):
    for onnx_path, xml_path in (seg[:2], det[:2]):
        model = onnx_path if which == 'onnx' else xml_path
        report = compare_backends(onnx_path, model, threads=1)
        print(f'{Path(model).name}: max abs diff {report["max_abs_diff"]:.3g}, scale '
              f'{report["scale"]:.3g}')
        assert report['scale'] > 1.0  # outputs with a scale
        assert report['rel_diff'] < FP32_TOL, report
        if 'argmax_agreement' in report:
            assert report['argmax_agreement'] > 0.999
    runtime = open_backend(det[0], backend='openvino', threads=1)
    assert runtime.output_names == open_backend(det[0]).output_names  # cls_score_0...
    assert runtime.output_names[0] == 'cls_score_0'


@pytest.mark.parametrize('which', ['onnx', 'xml'])
def test_fp32_nms_graph_gives_onnxruntimes_detections(det, which):
    """NonMaxSuppression, If and TopK run: the same boxes, scores and labels."""
    onnx_path, xml_path = det[2:]
    report = compare_backends(onnx_path, onnx_path if which == 'onnx' else xml_path,
                              threads=1)
    print(report)
    assert report['names'] == ['boxes', 'scores', 'labels']
    assert report['num_detections'][0] == report['num_detections'][1] > 50
    assert not report['tied_scores'] and report['labels_equal'], report
    assert report['rel_diff'] < FP32_TOL  # boxes (pixels of 160) and scores


# -- runtime choice, metadata --------------------------------------------------------
def test_runtime_choice(seg, tmp_path):
    onnx_path, xml_path, _ = seg
    runtime = open_backend(xml_path, threads=1)
    assert isinstance(runtime, OpenVINO) and runtime.name == 'openvino'
    assert runtime.input_names == ['input'] and runtime.output_names == ['logits']
    assert runtime.input_shape == (1, 3, *SHAPE) and runtime.fixed_size == SHAPE
    assert runtime.compiled.get_property('INFERENCE_PRECISION_HINT').to_string() == \
        'f32'  # not the bf16 the plugin picks on AMX CPUs
    assert choose_backend(None, xml_path) == 'openvino'
    assert choose_backend('openvino', onnx_path) == 'openvino'
    assert choose_backend(None, onnx_path) == 'onnxruntime'
    with pytest.raises(BackendError, match=r"backend='openvino' runs an exported "
                       r'\.xml / \.onnx file.*export_openvino\.py'):
        choose_backend('openvino', 'x.pth')
    with pytest.raises(FileNotFoundError, match='export_openvino.py'):
        open_backend(tmp_path / 'missing.xml')
    (tmp_path / 'lone.xml').write_bytes(Path(xml_path).read_bytes())
    with pytest.raises(BackendError, match=r'lone\.bin are missing'):
        open_backend(tmp_path / 'lone.xml')
    (tmp_path / 'bad.xml').write_text('not an IR')
    (tmp_path / 'bad.bin').write_bytes(b'')
    with pytest.raises(BackendError, match='OpenVINO cannot read it'):
        open_backend(tmp_path / 'bad.xml')


def test_metadata_round_trips(seg, det):
    for onnx_path, xml_path in (seg[:2], det[2:]):
        onnx_meta = read_onnx_metadata(onnx_path)
        xml_meta = backend_metadata(xml_path)  # OpenVINO.read_metadata: no compile
        assert xml_meta == OpenVINO.read_metadata(xml_path)
        for key, value in onnx_meta.items():
            assert xml_meta[key] == value, key
        assert xml_meta['conversion']['compress_to_fp16'] is False
    # what the compiled backends hold
    assert open_backend(seg[1]).metadata == backend_metadata(seg[1])
    assert open_backend(seg[0], backend='openvino').metadata == read_onnx_metadata(
        seg[0])
    meta = backend_metadata(seg[1])
    assert meta['task'] == 'segmentation' and meta['input_size'] == list(SHAPE)
    assert len(meta['class_names']) == 19 and meta['class_names'][0] == 'road'
    assert backend_metadata(det[3])['nms'] is True


def test_backend_model_predicts_onnxruntimes_label_map(seg):
    onnx_path, xml_path, cfg = seg
    from mmengine.registry import init_default_scope
    from mmseg.structures import SegDataSample
    init_default_scope(cfg.get('default_scope', 'mobilenet_tasks'))  # as tools/test.py
    rgb, _, _ = draw_demo_street(np.random.default_rng([5, 0]), SHAPE)
    image = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1)))
    maps = []
    for path in (onnx_path, xml_path):
        model = BackendModel(file=path, model=cfg.model, threads=1)
        assert model.runtime.name == ('openvino' if path == xml_path else
                                      'onnxruntime')
        sample = SegDataSample(metainfo=dict(img_shape=SHAPE, ori_shape=SHAPE))
        out = model.test_step(dict(inputs=[image], data_samples=[sample]))
        maps.append(out[0].pred_sem_seg.data.numpy())
    assert maps[0].shape == (1, *SHAPE) and np.unique(maps[0]).size >= 3
    assert (maps[0] == maps[1]).mean() > 0.999


# -- int8 --------------------------------------------------------------------------
# How close int8 must be to fp32 (the reasoning of test_quantize, for the IR): each
# FakeQuantize rounds its input to steps s = (high - low) / (levels - 1), an error of
# rms s / sqrt(12); int8 weights (int8 constant x scale) likewise. Were every such
# error to reach the logits undamped and independently, their relative rms error would
# be the root of the sum of the squares of these relative errors: the bound, computed
# from the scales NNCF chose and the tensors' magnitudes, not from any measured int8
# result, so it holds whatever the CPU's int8 kernels (VNNI, AMX, AVX2).
def _rounding_bound(int8_xml, batch) -> float:
    import openvino as ov
    model = ov.Core().read_model(str(int8_xml))
    squares, activations = [], []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == 'FakeQuantize':
            low, high = (op.input_value(i).get_node().get_data().astype(np.float64)
                         for i in (1, 2))
            step = (high - low) / (op.get_attributes()['levels'] - 1)
            source = op.input_value(0).get_node()
            if source.get_type_name() == 'Reshape' and source.input_value(
                    0).get_node().get_type_name() == 'Constant':  # float weights
                w = source.input_value(0).get_node().get_data().astype(
                    np.float64).reshape(tuple(op.get_output_shape(0)))
                squares.append(np.mean(np.broadcast_to(step, w.shape)**2) / 12 /
                               np.mean(w**2))
            else:
                activations.append((op.input_value(0), np.mean(step**2)))
        elif kind == 'Multiply' and op.input_value(0).get_node().get_type_name() == \
                'Convert':  # compressed weights: int8 constant x per-channel scale
            q = op.input_value(0).get_node().input_value(0).get_node()
            if q.get_type_name() == 'Constant' and q.get_element_type().get_type_name(
            ) == 'i8':
                scale = op.input_value(1).get_node().get_data().astype(np.float64)
                w = q.get_data() * scale
                squares.append(np.mean(np.broadcast_to(scale, w.shape)**2) / 12 /
                               np.mean(w**2))
    assert activations and squares
    outputs = model.add_outputs([port for port, _ in activations])
    compiled = ov.Core().compile_model(model, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32',
                                                      'INFERENCE_NUM_THREADS': '1'})
    values = compiled(batch)
    for (_, step_square), port in zip(activations, outputs):
        mean_square = float(np.mean(values[compiled.output(port.get_any_name())].astype(
            np.float64)**2))
        if mean_square > 0:
            squares.append(step_square / 12 / mean_square)
    return float(np.sqrt(np.sum(squares)))


@pytest.fixture(scope='module')
def demo_split(tmp_path_factory):
    """The small segmentation config on a generated demo Cityscapes (3 train
    images)."""
    from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
    from mobilenet_tasks.datasets.demo_cityscapes import make_demo_cityscapes
    root = tmp_path_factory.mktemp('ov_data') / 'demo_cityscapes'
    make_demo_cityscapes(root, num_train=3, num_val=1, image_size=SHAPE)
    convert_cityscapes(root)
    cfg = _small_seg_config()
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(root)
    return cfg


def test_int8_segmentation(seg, demo_split, tmp_path, capsys):
    onnx_path = seg[0]
    out = tmp_path / 'int8' / 'seg_int8.xml'
    report = quantize_openvino(onnx_path, out, config=demo_split, split='train',
                               num_images=3)
    print(report)
    assert report.out_path == str(out) and out.is_file() and out.with_suffix(
        '.bin').is_file()
    counts = ir_op_counts(out)
    assert report.fake_quantize == counts['FakeQuantize'] > 50  # a real int8 model
    assert report.num_images == 3 and 'train split' in report.source
    assert report.float_ops >= 2  # the classifiers' sum and the resize of the logits
    assert report.int8_bytes < report.fp32_bytes / 2
    assert 'FakeQuantize nodes:' in str(report) and 'MB int8' in str(report)

    meta = backend_metadata(out)
    for key, value in read_onnx_metadata(onnx_path).items():
        assert meta[key] == value, key
    info = meta['quantization']
    assert info['tool'] == 'nncf.quantize' and info['preset'] == 'mixed'
    assert info['nncf'] and info['openvino']
    assert info['calibration_images'] == 3 and info['source'] == onnx_path
    assert info['ignored_types'] == []

    runtime = open_backend(out, threads=1)  # compiles and runs
    if platform.machine().lower() in ('x86_64', 'amd64'):  # oneDNN's int8 kernels
        precisions = runtime.runtime_precisions()
        print('compiled layers by type and precision:', dict(precisions))
        assert precisions[('Convolution', 'u8')] + precisions[('Convolution',
                                                               'i8')] > 0

    # a random street scene of the kind calibrated on, not one of them (standard
    # normal noise is not: its activations overflow the calibrated ranges)
    rgb, _, _ = draw_demo_street(np.random.default_rng([7, 0]), SHAPE)
    path = tmp_path / 'street.png'
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    batch = ImageCalibrationReader([str(path)], demo_split, input_size=SHAPE).batches[0]
    ref = open_backend(onnx_path, threads=1).run(batch)[0]
    got = runtime.run(batch)[0]
    bound = _rounding_bound(out, batch)
    error = _rms(got - ref)
    rel = error / _rms(ref)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    agree = ref.argmax(1) == got.argmax(1)
    # The agreement an int8 error at the bound would give: independent errors of rms
    # sigma on the top two logits reverse a margin m with probability
    # Q(m / (sqrt(2) sigma)) = erfc(m / (2 sigma)) / 2. It comes from fp32's margins
    # and the bound alone, so 0.8 holds on any CPU whose int8 error keeps within it.
    sigma = bound * _rms(ref)
    at_bound = 1 - float(torch.special.erfc(torch.from_numpy(
        margin / (2 * sigma))).mean()) / 2
    # pixels whose margin exceeds 4 sqrt(2) times the measured rms error: two
    # independent errors of that rms reverse it with probability 3e-5
    sure = margin > 4 * np.sqrt(2) * error
    print(f'OpenVINO int8 vs fp32: relative rms error {rel:.3f} (bound {bound:.3f}); '
          f'argmax agrees on {agree.mean():.4f} of the pixels ({at_bound:.3f} expected '
          f'at the bound), on {agree[sure].mean():.4f} of the {sure.mean():.3f} with a '
          f'clear margin; {np.unique(ref.argmax(1)).size} classes win')
    assert np.unique(ref.argmax(1)).size >= 3
    assert rel <= bound, (rel, bound)
    assert at_bound > 0.8, at_bound  # fp32 and the bound: the same on any CPU
    assert sure.mean() > 0.1 and agree[sure].mean() >= 0.999
    assert agree.mean() > 0.8

    # what the tool's --check prints for it (without quantizing again)
    tool = load_tool('tools/deployment/export_openvino.py')
    args = argparse.Namespace(model=onnx_path, out=str(out), threads=1,
                              tolerance=1e-4, config=demo_split)
    tool._check_int8(args, report, compare_backends)
    text = capsys.readouterr().out
    assert 'OpenVINO int8 vs onnxruntime fp32 on a random input: ' in text
    assert 'on 3 of the calibration images: ' in text and 'same argmax on' in text
    assert 'convolutions run in int8' in text


def test_int8_detection_with_nms(det, tmp_path):
    """The NMS graph (its If, NonMaxSuppression, TopK) quantizes: FakeQuantize around
    the network only, the post-processing float, and it runs."""
    import openvino as ov
    from mobilenet_tasks.datasets.demo_coco import draw_demo_image
    onnx_path = det[2]
    image = draw_demo_image(np.random.default_rng([3, 0]), DET_SHAPE[0])[0]
    cv2.imwrite(str(tmp_path / 'calib.png'), image[:, :, ::-1])
    with pytest.raises(QuantizationError, match='holds an If.*fast bias correction'):
        quantize_openvino(onnx_path, tmp_path / 'q.xml', images=[tmp_path / 'x.png'],
                          fast_bias_correction=False)
    report = quantize_openvino(onnx_path, tmp_path / 'det_int8.xml',
                               images=[str(tmp_path / 'calib.png')])
    print(report)
    assert report.fake_quantize > 50 and report.float_ops > 100
    model = ov.Core().read_model(report.out_path)
    post = {'NonMaxSuppression', 'TopK', 'Softmax', 'Exp', 'If', 'Gather'}
    fed = {target.get_node().get_type_name() for op in model.get_ordered_ops()
           if op.get_type_name() == 'FakeQuantize'
           for target in op.output(0).get_target_inputs()}
    assert 'Convolution' in fed and not fed & post, fed
    assert {'TopK', 'Softmax', 'If'} <= {op.get_type_name()
                                        for op in model.get_ordered_ops()}
    runtime = open_backend(report.out_path, threads=1)
    boxes, scores, labels = runtime.run(
        ImageCalibrationReader([str(tmp_path / 'calib.png')], DET,
                               input_size=DET_SHAPE).batches[0])
    assert boxes.shape == (len(scores), 4) and labels.dtype == np.int64
    assert len(scores) > 0 and runtime.metadata['nms'] is True


def test_int8_refusals(seg, tmp_path, monkeypatch):
    onnx_path, xml_path, cfg = seg
    with pytest.raises(QuantizationError, match='no op of the model has that '
                       r"OpenVINO type.*Conv are Convolution"):
        quantize_openvino(onnx_path, tmp_path / 'q.xml', config=cfg,
                          images=[], ignored_types=['Conv'])
    with pytest.raises(ValueError, match='preset must be one of'):
        quantize_openvino(onnx_path, tmp_path / 'q.xml', preset='fast')
    monkeypatch.setitem(sys.modules, 'nncf', None)
    with pytest.raises(RuntimeMissingError, match=r'NNCF is not installed.*pip '
                       'install .* nncf'):
        quantize_openvino(xml_path, tmp_path / 'q.xml', config=cfg)


def test_convert_errors(seg, tmp_path):
    onnx_path, xml_path, cfg = seg
    with pytest.raises(FileNotFoundError, match='no such file.*export_onnx.py'):
        convert_onnx(tmp_path / 'missing.onnx', tmp_path / 'm.xml')
    with pytest.raises(OpenVINOExportError, match='ending in .xml'):
        convert_onnx(onnx_path, tmp_path / 'm.bin')
    with pytest.raises(OpenVINOExportError, match=r'not a \.onnx file'):
        convert_onnx(xml_path, tmp_path / 'again.xml')
    with pytest.raises(OpenVINOExportError, match='overwrite the input'):
        quantize_openvino(xml_path, xml_path, config=cfg)
    assert not (tmp_path / 'm.xml').exists() and not (tmp_path / 'm.bin').exists()


# -- the tool ------------------------------------------------------------------------
def test_tool_help_is_fast():
    """--help answers before torch, OpenVINO and NNCF are imported (the check of
    tests/test_tools/test_fast_help.py, with the runtimes added)."""
    tool = str(ROOT / 'tools/deployment/export_openvino.py')
    heavy = ('torch', 'openvino', 'nncf', 'onnxruntime', 'cv2')
    code = (f'import runpy, sys, time\nsys.argv = [{tool!r}, "--help"]\n'
            't = time.perf_counter()\ntry:\n'
            '    runpy.run_path(sys.argv[0], run_name="__main__")\n'
            'except SystemExit:\n    pass\n'
            f'print("@@", sorted(m for m in {heavy!r} if m in sys.modules), '
            'time.perf_counter() - t)')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'usage:' in proc.stdout and '--int8' in proc.stdout
    line = [x for x in proc.stdout.splitlines() if x.startswith('@@')][-1]
    print(f'--help: {line} s')
    assert line.startswith('@@ [] ')


def test_tool_end_to_end(seg, tmp_path, capsys):
    tool = load_tool('tools/deployment/export_openvino.py')
    out = tmp_path / 'tool' / 'seg.xml'
    assert tool.main([seg[0], '--out', str(out), '--check', '--threads', '1']) == 0
    text = capsys.readouterr().out
    print(text)
    assert f'converted {seg[0]} -> {out}' in text
    assert 'OpenVINO fp32 vs onnxruntime fp32 on a random input: max abs diff' in text
    assert text.rstrip().endswith(': OK')
    assert 'same argmax on' in text
    assert backend_metadata(out)['task'] == 'segmentation'

    assert tool.main([str(tmp_path / 'missing.onnx'), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'no such file' in err
    with pytest.raises(SystemExit) as exit_:
        tool.main([seg[0], '--out', str(out), '--preset', 'performance'])
    assert exit_.value.code == 2
    assert '--preset only apply with --int8' in capsys.readouterr().err


# -- a missing package ---------------------------------------------------------------
def test_missing_openvino_is_explained(seg, monkeypatch, tmp_path):
    xml_path = seg[1]
    real = importlib.import_module

    def no_openvino(name, *args, **kwargs):
        if name == 'openvino' or name.startswith('openvino.'):
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, 'import_module', no_openvino)
    monkeypatch.setitem(sys.modules, 'openvino', None)
    with pytest.raises(RuntimeMissingError, match=r'OpenVINO is not installed here.*'
                       r'pip install -c requirements/constraints.txt openvino'):
        open_backend(xml_path)
    with pytest.raises(RuntimeMissingError, match='openvino'):
        convert_onnx(seg[0], tmp_path / 'other.xml')
