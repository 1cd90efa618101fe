"""ONNX export of the segmentation models (mobilenet_tasks.deployment): standard ops
only, and onnxruntime's logits equal PyTorch's (LR-ASPP and R-ASPP)."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mobilenet_tasks.deployment import (NonStandardOpError, check_standard_ops,
                                        compare_with_onnxruntime, export_segmentor,
                                        read_metadata)
from mobilenet_tasks.deployment.onnx_export import (SegmentorLogits, export_loaded,
                                                    load_segmentor)
from mobilenet_tasks.testing import (assert_float64_close, float32_tolerance,
                                     load_tool, max_abs, max_abs_diff, randomize_)

from float64_reference import segmentor_logits  # noqa: I100 (tests/test_deployment)

ROOT = Path(__file__).resolve().parents[2]
MIN_CLASSES = 3  # of 19: the logits must vary over the image, not one class everywhere


def _load_tool():
    return load_tool('tools/deployment/export_onnx.py')


def _randomized(config, seed=1):
    """The segmentor of ``config`` with every convolution and BN layer random
    (``randomize_``): its initial weights give logits of 0.16 (LR-ASPP) or 1e-9
    (R-ASPP, whose classifier starts at N(0, 0.01) after BN at 0), where any error is
    small in absolute terms and one class wins everywhere."""
    model, cfg, meta = load_segmentor(config)
    assert randomize_(model, torch.Generator().manual_seed(seed)) > 0
    return model, cfg, meta


def _random_checkpoint(config, path):
    """``(checkpoint path, model)``: ``_randomized`` weights saved as a checkpoint."""
    model, _, _ = _randomized(config)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model


def _check_logits(got, model, x, what):
    """onnxruntime's logits ``got`` against PyTorch's on ``x``; returns the numbers.

    The bound is ``float32_tolerance(torch fp32, torch fp64)``: onnxruntime's and
    PyTorch's float32 kernels are two roundings of the same function, each off from
    the exact (float64) values by its own rounding error, so
    ``|ort - torch32| <= |ort - exact| + |torch32 - exact|``, which the bound (10x
    PyTorch's own error) holds unless onnxruntime rounds 9x worse or the graph
    computes something else. The argmax then agrees wherever the exact top-2 margin
    exceeds twice the distance of onnxruntime from the exact values.
    """
    ref32, ref64 = segmentor_logits(model, x)
    assert got.shape == tuple(ref64.shape), (got.shape, ref64.shape)
    scale, noise = max_abs(ref64), max_abs_diff(ref32, ref64)
    tol = float32_tolerance(ref32, ref64)
    diff = max_abs_diff(got, ref32)
    exact_label = ref64.argmax(1).numpy()
    top2 = ref64.topk(2, dim=1).values
    sure = (top2[:, 0] - top2[:, 1]).numpy() > 2 * (tol + noise)
    classes = np.unique(exact_label).size
    print(f'{what}: logit scale {scale:.3g}, {classes} classes win; torch fp32 off by '
          f'{noise:.3g}; onnxruntime off by {diff:.3g} (tolerance {tol:.3g}); '
          f'argmax compared on {sure.mean():.4f} of the pixels')
    assert scale > 1.0 and classes >= MIN_CLASSES, (scale, classes)
    assert diff <= tol, f'{what}: max abs logit diff {diff:.3g} > {tol:.3g}'
    assert sure.mean() > 0.99  # the argmax check covers nearly every pixel
    assert (got.argmax(1) == exact_label)[sure].all()
    return dict(scale=scale, tol=tol, diff=diff)


@pytest.mark.parametrize('config, shape, pool_op', [
    ('configs/lraspp_v3_large_demo.py', (256, 512), 'GlobalAveragePool'),
    ('configs/lraspp_v3_small_cityscapes.py', (769, 769), 'AveragePool'),  # 49x49
    # R-ASPP (Table 7 row 6; its image pooling is global), at a small size
    ('configs/raspp_v3_large_reduced_cityscapes.py', (128, 256), 'GlobalAveragePool'),
])
def test_export_matches_pytorch(tmp_path, config, shape, pool_op):
    ckpt, model = _random_checkpoint(ROOT / config, tmp_path / 'weights.pth')
    out = export_segmentor(str(ROOT / config), ckpt, tmp_path / 'model.onnx',
                           input_shape=shape)
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    domains = {node.domain for node in proto.graph.node}
    assert domains <= {'', 'ai.onnx'}, domains
    assert {o.domain for o in proto.opset_import} <= {'', 'ai.onnx'}
    assert [o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')
            ] == [17]
    ops = {node.op_type for node in proto.graph.node}
    assert pool_op in ops and 'Resize' in ops
    if pool_op == 'AveragePool':
        pool = next(n for n in proto.graph.node if n.op_type == 'AveragePool')
        attrs = {a.name: list(a.ints) for a in pool.attribute}
        assert attrs['kernel_shape'] == [49, 49] and attrs['strides'] == [16, 20]
    meta = read_metadata(proto)
    assert meta['input_size'] == list(shape) and meta['bgr_to_rgb'] is True
    assert meta['mean'] == [127.5] * 3 and meta['std'] == [127.5] * 3
    assert len(meta['class_names']) == 19 and meta['class_names'][0] == 'road'
    dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 19, *shape]

    # the library's own check, on its input (standard normal, seed 0)...
    report = compare_with_onnxruntime(str(ROOT / config), None, out, seed=0,
                                      model=model)
    assert report['shape'] == (1, 19, *shape)
    # ... and the same input here, against the exact (float64) logits (the graph was
    # exported from the checkpoint, the references come from the model saved in it)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    got = ort.InferenceSession(out, providers=['CPUExecutionProvider']).run(
        None, {'input': x.numpy()})[0]
    numbers = _check_logits(got, model, x, f'{config} {shape}')
    assert report['logit_scale'] == pytest.approx(numbers['scale'], rel=1e-5)
    assert report['max_abs_diff'] <= numbers['tol'], report
    assert report['argmax_agreement'] > 0.99


def test_dynamic_shape(tmp_path):
    """Global-pool variant exported with dynamic axes runs at other sizes."""
    config = str(ROOT / 'configs/lraspp_v3_large_demo.py')
    model, cfg, meta = _randomized(config)
    out = export_loaded(model, cfg, meta, config, tmp_path / 'dyn.onnx', (128, 256),
                        dynamic=True)
    x = torch.randn(2, 3, 96, 160)
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': x.numpy()})[0]
    assert got.shape == (2, 19, 96, 160)
    _check_logits(got, model, x, 'dynamic, 2x3x96x160')


def test_logits_are_encode_decode():
    """The wrapper computes the segmentor's own encode_decode (in float64, where
    both are exact to ~1e-13 of the scale)."""
    model, _, _ = _randomized(str(ROOT / 'configs/lraspp_v3_large_demo.py'))
    model = model.double()
    x = torch.randn(1, 3, 64, 128, dtype=torch.float64)
    metas = [dict(img_shape=(64, 128), ori_shape=(64, 128), pad_shape=(64, 128))]
    with torch.no_grad():
        assert_float64_close(SegmentorLogits(model)(x), model.encode_decode(x, metas),
                             'SegmentorLogits vs encode_decode')


def test_too_small_for_pool_kernel(tmp_path):
    with pytest.raises(ValueError, match='global_pool=True'):
        export_segmentor(str(ROOT / 'configs/lraspp_v3_small_cityscapes.py'), None,
                         tmp_path / 'm.onnx', input_shape=(256, 256))
    assert not (tmp_path / 'm.onnx').exists()


def test_custom_domain_rejected():
    node = onnx.helper.make_node('FusedConv', ['x'], ['y'], domain='com.microsoft')
    graph = onnx.helper.make_graph(
        [node], 'g', [onnx.helper.make_tensor_value_info('x', onnx.TensorProto.FLOAT,
                                                         [1])],
        [onnx.helper.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid('', 17), onnx.helper.make_opsetid('com.microsoft', 1)])
    with pytest.raises(NonStandardOpError, match='com.microsoft::FusedConv'):
        check_standard_ops(model)


def test_cli(tmp_path, capsys, monkeypatch):
    """The tool's verdict: OK on random weights (logits of a scale where
    ``--tolerance``, relative to it, means something), FAILED on a graph that
    computes something else."""
    tool = _load_tool()
    config = str(ROOT / 'configs/lraspp_v3_large_demo.py')
    ckpt, _ = _random_checkpoint(config, tmp_path / 'w.pth')
    out = tmp_path / 'demo.onnx'
    assert tool.main([config, ckpt, str(out), '--shape', '128', '256']) == 0
    text = capsys.readouterr().out
    assert 'max abs diff of logits' in text and ': OK' in text
    scale = float(text.split('(scale ')[1].split(',')[0])
    assert scale > 10  # the verdict is relative to the scale floored at 1
    assert out.is_file() and read_metadata(out)['input_size'] == [128, 256]

    import mobilenet_tasks.deployment as deployment
    export = deployment.export_loaded

    def export_scaled(*args, **kwargs):
        """The export, then the last convolution's weights x 1.01."""
        path = export(*args, **kwargs)
        proto = onnx.load(path)
        weights = {i.name: i for i in proto.graph.initializer}
        last = [n for n in proto.graph.node if n.op_type == 'Conv'][-1]
        w = weights[last.input[1]]
        w.CopyFrom(onnx.numpy_helper.from_array(
            onnx.numpy_helper.to_array(w) * np.float32(1.01), w.name))
        onnx.save(proto, path)
        return path

    monkeypatch.setattr(deployment, 'export_loaded', export_scaled)
    assert tool.main([config, ckpt, str(tmp_path / 'bad.onnx'), '--shape', '128',
                      '256']) == 1
    assert ': FAILED' in capsys.readouterr().out


def test_load_segmentor_refuses_a_detector():
    with pytest.raises(ValueError, match='not an mmseg segmentor'):
        load_segmentor(str(ROOT / 'configs/ssdlite_v3_large_demo.py'))
