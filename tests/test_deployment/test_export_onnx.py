"""ONNX export of the segmentation models (mobilenet_tasks.deployment): standard ops
only, and onnxruntime's logits equal PyTorch's."""
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
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4  # max abs logit difference, relative to max(1, logit scale)


def _load_tool():
    return load_tool('tools/deployment/export_onnx.py')


def _random_checkpoint(config, path):
    """Random weights of ``config`` saved as a checkpoint, BN statistics made
    non-trivial (fresh ones are 0 / 1, which would hide a BN folding error)."""
    model, _, _ = load_segmentor(config)
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 1.5, generator=gen)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


@pytest.mark.parametrize('config, shape, pool_op', [
    ('configs/lraspp_v3_large_demo.py', (256, 512), 'GlobalAveragePool'),
    ('configs/lraspp_v3_small_cityscapes.py', (769, 769), 'AveragePool'),  # 49x49
])
def test_export_matches_pytorch(tmp_path, config, shape, pool_op):
    ckpt = _random_checkpoint(ROOT / config, tmp_path / 'weights.pth')
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

    report = compare_with_onnxruntime(str(ROOT / config), ckpt, out)
    print(f'{config} {shape}: max abs diff {report["max_abs_diff"]:.3g} '
          f'(logit scale {report["logit_scale"]:.3g})')
    assert report['shape'] == (1, 19, *shape)
    assert report['logit_scale'] > 0.01  # not a trivially zero output
    assert report['rel_diff'] < TOL, report
    assert report['argmax_agreement'] > 0.999


def test_dynamic_shape(tmp_path):
    """Global-pool variant exported with dynamic axes runs at other sizes."""
    config = str(ROOT / 'configs/lraspp_v3_large_demo.py')
    model, cfg, meta = load_segmentor(config)
    out = export_loaded(model, cfg, meta, config, tmp_path / 'dyn.onnx', (128, 256),
                        dynamic=True)
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        ref = SegmentorLogits(model)(x).numpy()
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    got = session.run(None, {'input': x.numpy()})[0]
    assert got.shape == (2, 19, 96, 160)
    assert np.abs(got - ref).max() < TOL * max(1.0, np.abs(ref).max())


def test_logits_are_encode_decode():
    """The wrapper computes the segmentor's own encode_decode."""
    model, _, _ = load_segmentor(str(ROOT / 'configs/lraspp_v3_large_demo.py'))
    x = torch.randn(1, 3, 64, 128)
    metas = [dict(img_shape=(64, 128), ori_shape=(64, 128), pad_shape=(64, 128))]
    with torch.no_grad():
        torch.testing.assert_close(SegmentorLogits(model)(x),
                                   model.encode_decode(x, metas))


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


def test_cli(tmp_path, capsys):
    tool = _load_tool()
    out = tmp_path / 'demo.onnx'
    assert tool.main([str(ROOT / 'configs/lraspp_v3_large_demo.py'), 'none', str(out),
                      '--shape', '128', '256']) == 0
    text = capsys.readouterr().out
    assert 'max abs diff of logits' in text and ': OK' in text
    assert out.is_file() and read_metadata(out)['input_size'] == [128, 256]


def test_load_segmentor_refuses_a_detector():
    with pytest.raises(ValueError, match='not an mmseg segmentor'):
        load_segmentor(str(ROOT / 'configs/ssdlite_v3_large_demo.py'))
