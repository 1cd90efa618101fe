"""Post-training int8 quantization (mobilenet_tasks.deployment.quantize): runs end to
end on a few calibration images, gives a standard-ops QDQ model whose outputs follow the
fp32 model's, keeps the post-processing float, and fails clearly on bad inputs."""
import copy
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
from mobilenet_tasks.deployment.calibration import (ImageCalibrationReader,
                                                    calibration_images)
from mobilenet_tasks.deployment.onnx_graph import (QuantizationError, network_model,
                                                   postprocessing_nodes)
from mobilenet_tasks.deployment.quantize import quantize_model, run_onnx
from mobilenet_tasks.testing import load_tool, randomize_
from mobilenet_tasks.utils.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SEG = str(ROOT / 'configs/lraspp_v3_large_demo.py')
RASPP = str(ROOT / 'configs/raspp_v3_large_reduced_cityscapes.py')
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
SHAPE = (64, 128)  # small; the demo config's LR-ASPP pools globally, any size works


def _load_tool():
    return load_tool('tools/deployment/quantize_onnx.py')


# -- how close int8 must be to fp32 ----------------------------------------------------
# int8 results differ between CPUs (VNNI kernels sum exactly, AVX2's u8s8 ones can
# saturate 16-bit pair sums; float parts round differently, and one rounding step that
# flips early changes what follows), so no measured error is a bound. The bound here
# comes from the int8 model itself: each quantized tensor x carries a rounding error
# uniform in +-s/2 (s its scale), rms s / sqrt(12), i.e. s / sqrt(12 mean(x^2)) of its
# own rms; each weight tensor likewise with its per-channel scales. If every one of
# these errors reached the output undamped and independently, the output's relative
# rms error would be the root of the sum of their squares: that is the bound (it
# comes from the scales the calibration chose and the magnitudes of the tensors, not
# from any measured int8 error). It holds for networks whose layers do not amplify
# relative errors: trained ones, and the random ones of _calm (measured 0.3-0.7 of
# the bound, within +-15% over models whose weights differ by 1e-6, as BN folding on
# another CPU may make them). A wrong calibration range (clipping), a wrong scale or
# zero point, or a layer computing something else adds errors that rounding cannot
# explain.
def _session(proto, extra_outputs=(), fused=True):
    """An onnxruntime session of ``proto`` with ``extra_outputs`` as outputs; not
    ``fused``: without graph optimizations, so that Q and DQ run as the float
    operators the ONNX standard defines (no int8 kernels) and every tensor exists."""
    proto = copy.deepcopy(proto)
    for name in extra_outputs:
        proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options,
                                providers=['CPUExecutionProvider'])


def _rounding_bound(int8_path, batch) -> float:
    """The relative rms error of the outputs if every rounding of the int8 model
    reached them undamped (see above), on ``batch``."""
    proto = onnx.load(str(int8_path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    activations = [(n.input[0], float(inits[n.input[1]])) for n in proto.graph.node
                   if n.op_type == 'QuantizeLinear' and n.input[0] not in inits]
    squares = []
    for node in proto.graph.node:  # weights: DequantizeLinear of int8 initializers
        q = inits.get(node.input[0]) if node.op_type == 'DequantizeLinear' else None
        if q is not None and q.dtype == np.int8:
            scale = inits[node.input[1]].astype(np.float64)
            if scale.ndim:  # per output channel
                scale = scale.reshape((-1, ) + (1, ) * (q.ndim - 1))
            w = q * scale
            squares.append(np.mean(np.broadcast_to(scale, w.shape)**2) / 12
                           / np.mean(w**2))
    assert activations and squares
    session = _session(proto, [name for name, _ in activations], fused=False)
    values = dict(zip([o.name for o in session.get_outputs()],
                      session.run(None, {session.get_inputs()[0].name: batch})))
    for name, scale in activations:
        mean_square = float(np.mean(values[name].astype(np.float64)**2))
        if mean_square > 0:
            squares.append(scale**2 / 12 / mean_square)
    return float(np.sqrt(np.sum(squares)))


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(x, np.float64)))))


def _calm(model, seed: int, factor: float):
    """``randomize_``, then the backbone's convolutions scaled by ``factor``.

    He-normal weights with random BN make MobileNetV3 amplify relative errors near
    the edge of chaos: int8 rounding then grows to 10-15% of the segmentors' logits
    (2/3 of the bound, and a different 10-15% whenever the weights change by 1e-6)
    and to 40-75% of the SSDLite demo's head outputs (over the bound: one rounding
    step that flips early changes all that follows, so every CPU gets another
    result). Scaled down a little the network damps them (the SSDLite demo at 0.9:
    int8 error 0.11-0.12 of the rms, bound 0.165; LR-ASPP, seed 1, at 0.95:
    0.034-0.049, bound 0.15; R-ASPP at 0.95: 0.05-0.08, bound 0.15), and its outputs
    still depend on the image (SSDLite at 0.9: by 28% of their rms; at 0.7 by 0.1%,
    the random BN biases deciding everything) and several classes still win.
    """
    assert randomize_(model, torch.Generator().manual_seed(seed)) > 0
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(factor)
    return model


def _check_int8_logits(fp32, int8, batches, what):
    """int8 segmentation logits follow fp32's on ``batches``: their relative rms
    error is under the rounding bound, and the argmax agrees wherever the fp32
    top-2 margin exceeds 4 sqrt(2) times the rms error (two independent errors of that
    rms reverse such a margin with probability 3e-5)."""
    ref, got = run_onnx(fp32, batches), run_onnx(int8, batches)
    for b, r, g in zip(batches, ref, got):
        assert g.shape == r.shape == (1, 19, *SHAPE)
        bound = _rounding_bound(int8, b)
        error = _rms(g - r)
        rel = error / _rms(r)
        top2 = np.sort(r, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] > 4 * np.sqrt(2) * error
        agree = (r.argmax(1) == g.argmax(1))
        classes = np.unique(r.argmax(1)).size
        print(f'{what}: int8 vs fp32 relative rms error {rel:.3f} (bound {bound:.3f}); '
              f'argmax agrees on {agree.mean():.4f} of the pixels, on '
              f'{agree[sure].mean():.4f} of the {sure.mean():.3f} with a clear margin; '
              f'{classes} classes win, logit scale {np.abs(r).max():.3g}')
        assert np.abs(r).max() > 1.0 and classes >= 3  # logits with a scale and shape
        assert rel <= bound, (what, rel, bound)
        assert sure.mean() > 0.1  # the argmax check covers a tenth of the image
        assert agree[sure].mean() >= 0.999, (what, agree[sure].mean())


def _small_seg_config(config=SEG):
    """A segmentation config (the demo one by default) with a test resize to 64x128
    (what the model is exported for)."""
    cfg = load_config(config)
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
    near 0, whose argmax quantization noise decides; see ``_calm``), exported at
    64x128."""
    tmp = tmp_path_factory.mktemp('quant_seg')
    cfg = _small_seg_config()
    model, _, meta = load_model(cfg)
    _calm(model, seed=1, factor=0.95)
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
    _check_int8_logits(fp32, out, batches, 'LR-ASPP')


def test_quantize_raspp(tmp_path):
    """R-ASPP (Table 7 row 6) quantizes as LR-ASPP does: every convolution int8, the
    logits follow fp32's."""
    cfg = _small_seg_config(RASPP)
    model, _, meta = load_model(cfg)
    _calm(model, seed=1, factor=0.95)
    fp32 = export_loaded(model, cfg, meta, RASPP, tmp_path / 'fp32.onnx', SHAPE)
    calib = _write_streets(tmp_path / 'calib', 2, seed=1)
    held_out = _write_streets(tmp_path / 'held_out', 1, seed=2)
    report = quantize_model(fp32, tmp_path / 'int8.onnx', config=cfg, images=calib)
    proto = onnx.load(report.out_path)
    check_standard_ops(proto)
    assert report.quantized_ops['Conv'] == sum(n.op_type == 'Conv'
                                               for n in proto.graph.node) > 0
    assert 'GlobalAveragePool' in {n.op_type for n in proto.graph.node}  # image pool
    batches = ImageCalibrationReader(held_out, cfg, input_size=SHAPE).batches
    _check_int8_logits(fp32, report.out_path, batches, 'R-ASPP')


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


def _network_outputs(path, batch) -> dict:
    """The network's outputs (what the post-processing reads: the head's class logits
    and box deltas) of an ONNX detector, by name, with onnxruntime's int8 kernels."""
    proto = onnx.load(str(path))
    session = _session(network_model(proto, postprocessing_nodes(proto)))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {'input': batch})))


def test_detection_with_nms_in_the_graph(tmp_path):
    """SSDLite with decoding and NMS in the graph: only the network is quantized (the
    NMS, TopK, Softmax... stay float), a histogram calibration works although the NMS
    gives another number of boxes on every image, and int8 finds fp32's confident
    detections."""
    from torchvision.ops import box_iou
    model, cfg, meta = load_model(DET)
    _calm(model, seed=0, factor=0.9)  # class logits of a few units: spread scores
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

    # an image not calibrated on, preprocessed as the reader does (160x160 already;
    # test_reader_preprocesses_like_the_data_preprocessor)
    rgb, *_ = draw_demo_image(np.random.default_rng([3, 2]), 160)
    batch = (rgb.transpose(2, 0, 1)[None].astype(np.float32) - 127.5) / 127.5
    # the network: class logits and box deltas under the rounding bound
    bound = _rounding_bound(report.out_path, batch)
    ref_net, got_net = _network_outputs(fp32, batch), _network_outputs(
        report.out_path, batch)
    assert set(ref_net) == set(got_net) and len(ref_net) == 2 * len(
        model.bbox_head.cls_convs)
    for name, r in ref_net.items():
        rel = _rms(got_net[name] - r) / _rms(r)
        assert rel <= bound, (name, rel, bound)
    cls_names = [n for n in ref_net if 'cls_convs' in n]
    assert len(cls_names) == len(model.bbox_head.cls_convs)
    logit_error = max(float(np.abs(got_net[n] - ref_net[n]).max()) for n in cls_names)

    # the detections: softmax moves a score by at most half the largest change of
    # the logits; the graph's logits are the network's rounded once more (half a
    # step of its scale), and the int8 graph may fuse differently from the network
    # alone: twice that
    cls_steps = [float(onnx.numpy_helper.to_array(i)) for i in proto.graph.initializer
                 if any(n in i.name for n in cls_names) and i.name.endswith('_scale')
                 and i.dims == []]
    assert cls_steps
    score_tol = 2 * 0.5 * (logit_error + max(cls_steps) / 2)
    ref = _session(onnx.load(fp32)).run(None, {'input': batch})
    got = session.run(None, {'input': batch})
    top = np.argsort(-ref[1], kind='stable')[:20]  # fp32's 20 best
    assert len(ref[1]) > 50 and np.diff(np.sort(ref[1][top])).min() > 0  # no ties
    iou = box_iou(torch.from_numpy(ref[0][top]), torch.from_numpy(got[0])).numpy()
    iou[ref[2][top][:, None] != got[2][None]] = 0  # the same label only
    best = iou.argmax(1)
    score_diff = np.abs(got[1][best] - ref[1][top])
    print(f'int8 vs fp32: network rms error bound {bound:.3f}, max logit error '
          f'{logit_error:.3g}; fp32 scores {ref[1][top[-1]]:.3f}..'
          f'{ref[1][top[0]]:.3f}; '
          f'IoU of the best int8 match >= {iou.max(1).min():.3f}, scores within '
          f'{score_diff.max():.3g} (bound {score_tol:.3g})')
    # each is found: the same label, the same object (IoU 0.5, VOC's criterion: int8
    # rounding moves a box by a few percent of its size), a score within the bound
    assert (iou.max(1) >= 0.5).all(), iou.max(1)
    assert (score_diff <= score_tol).all(), (score_diff, score_tol)


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
