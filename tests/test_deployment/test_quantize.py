"""Post-training int8 quantization (mobilenet_tasks.deployment.quantize): runs end to
end on a few calibration images, gives a standard-ops QDQ model whose outputs follow the
fp32 model's, keeps the post-processing float, and fails clearly on bad inputs."""
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mobilenet_tasks.apis.inputs import InputError
from mobilenet_tasks.datasets.demo_cityscapes import draw_demo_street
from mobilenet_tasks.datasets.demo_coco import draw_demo_image
from mobilenet_tasks.deployment import check_standard_ops, read_metadata
from mobilenet_tasks.deployment.onnx_export import export_loaded, load_model
from mobilenet_tasks.deployment.quantize import (ImageCalibrationReader,
                                                 QuantizationError,
                                                 calibration_images,
                                                 postprocessing_nodes, quantize_model,
                                                 run_onnx)
from mobilenet_tasks.testing import load_tool, randomize_
from mobilenet_tasks.utils.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
SHAPE = (64, 128)  # small; the demo config's LR-ASPP pools globally, any size works


def _load_tool():
    return load_tool('tools/deployment/quantize_onnx.py')


def _small_seg_config():
    """The demo segmentation config with a test resize to 64x128 (what the model is
    exported for)."""
    cfg = load_config(SEG)
    pipeline = [dict(t) for t in cfg.test_dataloader.dataset.pipeline]
    for t in pipeline:
        if t['type'] == 'Resize':
            t['scale'] = SHAPE[::-1]
    cfg.test_dataloader.dataset.pipeline = pipeline
    return cfg


def _write_streets(folder: Path, num: int, seed: int) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(num):
        rgb, _, _ = draw_demo_street(np.random.default_rng([seed, i]), SHAPE)
        path = folder / f'street_{i}.png'
        cv2.imwrite(str(path), rgb[:, :, ::-1])
        paths.append(str(path))
    return paths


@pytest.fixture(scope='module')
def seg_model(tmp_path_factory):
    """``(fp32 .onnx path, config, calibration folder, held-out image paths)``: the demo
    segmentor with random weights and random BN statistics (fresh ones give logits
    near 0, whose argmax quantization noise decides), exported at 64x128."""
    tmp = tmp_path_factory.mktemp('quant_seg')
    cfg = _small_seg_config()
    model, _, meta = load_model(cfg)
    assert randomize_(model, torch.Generator().manual_seed(0)) > 0
    path = export_loaded(model, cfg, meta, SEG, tmp / 'fp32.onnx', SHAPE)
    _write_streets(tmp / 'calib', 4, seed=1)
    held_out = _write_streets(tmp / 'held_out', 2, seed=2)
    return path, cfg, tmp / 'calib', held_out


def test_quantize_segmentation_end_to_end(seg_model, tmp_path):
    fp32, cfg, calib, held_out = seg_model
    out = tmp_path / 'sub' / 'int8.onnx'
    report = quantize_model(fp32, out, config=cfg, images=calib)
    assert report.out_path == str(out) and out.is_file()
    assert report.num_images == 4 and report.method == 'minmax' and report.per_channel

    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    check_standard_ops(proto)  # QDQ with int8 types: no com.microsoft ops
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count('QuantizeLinear') > 50 and ops.count('DequantizeLinear') > 50
    # every convolution runs on quantized inputs; what follows the classifiers
    # (their sum and the resize to the input) reads float
    assert report.quantized_ops['Conv'] == ops.count('Conv') > 0
    assert report.float_ops['Resize'] >= 1 and len(report.excluded) >= 2
    # per-channel weight scales (axis 0 of the conv weights)
    weight_dq = [n for n in proto.graph.node if n.op_type == 'DequantizeLinear'
                 and any(a.name == 'axis' for a in n.attribute)]
    assert weight_dq
    assert report.int8_bytes < report.fp32_bytes / 2.5

    meta = read_metadata(proto)
    fp32_meta = read_metadata(fp32)
    for key, value in fp32_meta.items():
        assert meta[key] == value, key
    info = meta['quantization']
    assert info['format'] == 'QDQ' and info['calibration_images'] == 4
    assert info['method'] == 'minmax' and info['per_channel'] is True
    assert str(calib) in info['calibration_source']

    # the int8 logits follow fp32's on images not used for calibration
    batches = ImageCalibrationReader(held_out, cfg, input_size=SHAPE).batches
    ref = run_onnx(fp32, batches)
    got = run_onnx(out, batches)
    for r, g in zip(ref, got):
        assert g.shape == r.shape == (1, 19, *SHAPE)
        scale = np.abs(r).max()
        assert scale > 1.0  # random BN statistics give the logits a scale
        rel = np.sqrt(np.mean((r - g)**2)) / np.sqrt(np.mean(r**2))
        agree = (r.argmax(1) == g.argmax(1)).mean()
        print(f'int8 vs fp32: relative rms error {rel:.3f}, argmax agreement '
              f'{agree:.4f}')
        # measured: rms 0.107 / 0.106, agreement 0.957 / 0.923; a calibration on
        # wrongly preprocessed images (BGR, x0.3) gave 0.32 / 0.25, 0.67 / 0.85
        assert rel < 0.2 and agree > 0.85


def test_reader_preprocesses_like_the_data_preprocessor(seg_model):
    """BGR file -> RGB, (x - 127.5) / 127.5, NCHW float32: the model's own input."""
    _, cfg, _, held_out = seg_model
    reader = ImageCalibrationReader(held_out[:1], cfg, input_name='input',
                                    input_size=SHAPE)
    assert len(reader) == 1
    batch = reader.get_next()['input']
    assert reader.get_next() is None
    bgr = cv2.imread(held_out[0])
    expected = (bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) -
                127.5) / 127.5
    assert batch.dtype == np.float32 and batch.shape == (1, 3, *SHAPE)
    np.testing.assert_array_equal(batch, expected)
    reader.rewind()
    assert reader.get_next() is not None


def test_size_mismatch_is_explained(seg_model, tmp_path):
    """The unchanged demo config resizes to 256x512; the model takes 64x128 only."""
    fp32, _, calib, _ = seg_model
    with pytest.raises(QuantizationError,
                       match=r'gives a 256x512 input.*64x128 only.*--shape 256 512'):
        quantize_model(fp32, tmp_path / 'int8.onnx', config=SEG, images=calib)
    assert not (tmp_path / 'int8.onnx').exists()


def test_bad_inputs(seg_model, tmp_path):
    fp32, cfg, calib, _ = seg_model
    out = tmp_path / 'int8.onnx'
    with pytest.raises(FileNotFoundError, match='no such file'):
        quantize_model(tmp_path / 'missing.onnx', out, config=cfg, images=calib)
    not_onnx = tmp_path / 'weights.pth'
    torch.save({'state_dict': {}}, not_onnx)
    with pytest.raises(QuantizationError, match='not an ONNX model'):
        quantize_model(not_onnx, out, config=cfg, images=calib)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    with pytest.raises(InputError, match='no images'):
        quantize_model(fp32, out, config=cfg, images=tmp_path / 'empty')
    with pytest.raises(InputError, match='no such folder'):
        quantize_model(fp32, out, config=cfg, images=tmp_path / 'nowhere')
    with pytest.raises(QuantizationError, match='overwrite the fp32 model'):
        quantize_model(fp32, fp32, config=cfg, images=calib)
    with pytest.raises(ValueError, match='method must be one of'):
        quantize_model(fp32, out, config=cfg, images=calib, method='max')
    assert not out.exists()


def test_already_quantized_refused(seg_model, tmp_path):
    fp32, cfg, calib, _ = seg_model
    int8 = quantize_model(fp32, tmp_path / 'int8.onnx', config=cfg, images=calib,
                          num_images=1).out_path
    with pytest.raises(QuantizationError, match='already quantized'):
        quantize_model(int8, tmp_path / 'again.onnx', config=cfg, images=calib)


def test_postprocessing_nodes():
    """What does not feed a convolution is post-processing, whatever its op type."""
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), 'w')
    w2 = onnx.numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), 'w2')
    nodes = [
        h.make_node('Conv', ['x', 'w'], ['a'], name='conv1'),
        h.make_node('Relu', ['a'], ['b'], name='relu'),  # feeds conv2: network
        h.make_node('Conv', ['b', 'w2'], ['c'], name='conv2'),
        h.make_node('Relu', ['c'], ['d'], name='relu_after'),  # after: post-proc.
        h.make_node('Softmax', ['d'], ['e'], name='softmax', axis=1),
        h.make_node('Add', ['a', 'c'], ['f'], name='add'),
    ]
    graph = h.make_graph(
        nodes, 'g', [h.make_tensor_value_info('x', onnx.TensorProto.FLOAT,
                                              [1, 3, 4, 4])],
        [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in 'ef'],
        initializer=[w, w2])
    model = h.make_model(graph)
    assert postprocessing_nodes(model) == ['relu_after', 'softmax', 'add']


def test_detection_with_nms_in_the_graph(tmp_path):
    """SSDLite with decoding and NMS in the graph: only the network is quantized (the
    NMS, TopK, Softmax... stay float), and a histogram calibration works although the
    NMS gives another number of boxes on every image."""
    model, cfg, meta = load_model(DET)
    randomize_(model, torch.Generator().manual_seed(0))
    fp32 = export_loaded(model, cfg, meta, DET, tmp_path / 'det.onnx', (160, 160))
    folder = tmp_path / 'images'
    folder.mkdir()
    for i in range(2):
        image, *_ = draw_demo_image(np.random.default_rng([3, i]), 160)
        cv2.imwrite(str(folder / f'{i}.jpg'), image[:, :, ::-1])
    report = quantize_model(fp32, tmp_path / 'det_int8.onnx', config=DET,
                            images=folder, method='percentile')
    proto = onnx.load(report.out_path)
    check_standard_ops(proto)
    ops = {n.op_type for n in proto.graph.node}
    assert {'TopK', 'Softmax', 'Exp'} <= ops
    for op in ('NonMaxSuppression', 'TopK', 'Softmax', 'Exp', 'Gather'):
        if op in ops:
            assert report.float_ops[op] > 0 and op not in report.quantized_ops, op
    assert report.quantized_ops['Conv'] == sum(
        n.op_type == 'Conv' for n in proto.graph.node)
    meta = read_metadata(proto)
    assert meta['task'] == 'detection' and meta['quantization']['method'] == \
        'percentile'
    session = ort.InferenceSession(report.out_path,
                                   providers=['CPUExecutionProvider'])
    outputs = session.run(None, {'input': np.zeros((1, 3, 160, 160), np.float32)})
    assert [o.name for o in session.get_outputs()] == ['boxes', 'scores', 'labels']
    assert len(outputs) == 3


def test_calibration_images_from_the_config_split(tmp_path):
    """Without a folder, the images of the config's split, as its dataset lists
    them, evenly spaced."""
    from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
    from mobilenet_tasks.datasets.demo_cityscapes import make_demo_cityscapes
    root = tmp_path / 'demo_cityscapes'
    make_demo_cityscapes(root, num_train=1, num_val=5, image_size=SHAPE)
    convert_cityscapes(root)
    cfg = load_config(SEG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(root)
    every, source = calibration_images(cfg, split='val', num_images=None)
    assert len(every) == 5 and 'val split' in source
    assert all('leftImg8bit/val' in p for p in every)
    picked, _ = calibration_images(cfg, split='val', num_images=3)
    assert picked == [every[0], every[2], every[4]]
    train, _ = calibration_images(cfg, split='train')
    assert len(train) == 1 and 'leftImg8bit/train' in train[0]
    cfg.val_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='missing'):
        calibration_images(cfg, split='val')


def test_cli(seg_model, tmp_path, capsys):
    fp32, _, calib, _ = seg_model
    tool = _load_tool()
    # the tool takes a config file: the demo one, with --cfg-like sizes, is written
    cfg = _small_seg_config()
    config_file = tmp_path / 'small_config.py'
    cfg.dump(str(config_file))
    out = tmp_path / 'int8.onnx'
    assert tool.main([fp32, str(out), '--config', str(config_file), '--images',
                      str(calib), '--num-images', '2', '--per-tensor']) == 0
    text = capsys.readouterr().out
    assert 'quantized nodes (int8 in and out): ' in text and 'Conv ' in text
    assert '2 images from folder' in text and 'weights per tensor' in text
    assert 'MB fp32 ->' in text
    info = read_metadata(out)['quantization']
    assert info['per_channel'] is False and info['calibration_images'] == 2

    assert tool.main([str(tmp_path / 'missing.onnx'), str(out), '--config',
                      str(config_file), '--images', str(calib)]) == 1
    assert 'no such file' in capsys.readouterr().err
