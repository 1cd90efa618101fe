import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mobilenet_tasks.models.backbones import MobileNetV3, make_divisible
from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.testing import assert_float64_close


def test_make_divisible():
    assert make_divisible(16 * 0.75) == 16
    assert make_divisible(160 * 0.75) == 120
    assert make_divisible(672 * 0.35) == 232
    assert make_divisible(5.6) == 8  # never below the divisor
    assert make_divisible(20, 16) == 32  # never more than 10% below the value


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='medium'), 'arch must be one of'),
    (dict(widen_factor=0.2), r'widen_factor must be in \[0.35, 1.25\]'),
    (dict(widen_factor=1.5), r'widen_factor must be in \[0.35, 1.25\]'),
    (dict(output_stride=4), 'output_stride must be 8, 16 or 32'),
    (dict(out_indices=(17, )), r'out_indices must be layers in range\(0, 17\)'),
    (dict(out_indices=(-1, )), r'out_indices must be layers'),
    (dict(expansion_indices=(1, )), 'expansion_indices must be blocks that have'),
    (dict(expansion_indices=(16, )), 'expansion_indices must be blocks that have'),
    (dict(frozen_stages=17), r'frozen_stages must be in range\(-1, 17\)'),
    (dict(frozen_stages=-2), r'frozen_stages must be in range\(-1, 17\)'),
    (dict(out_indices=()), 'both empty'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV3(**kwargs)


def test_large_channels_and_strides():
    model = MobileNetV3('large', out_indices=tuple(range(17)))
    assert model.out_channels == (16, 16, 24, 24, 40, 40, 40, 80, 80, 80, 80, 112,
                                  112, 160, 160, 160, 960)
    assert model.strides == (2, 2, 4, 4, 8, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32,
                             32)
    outs = model(torch.rand(1, 3, 64, 64))
    assert len(outs) == 17
    for out, channels, stride in zip(outs, model.out_channels, model.strides):
        assert out.shape == (1, channels, 64 // stride, 64 // stride)


def test_small_channels_and_strides():
    model = MobileNetV3('small', out_indices=(0, 1, 3, 8, 11, 12))
    assert model.out_channels == (16, 16, 24, 48, 96, 576)
    assert model.strides == (2, 4, 8, 16, 32, 32)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(16, 32, 32), (16, 16, 16),
                                                  (24, 8, 8), (48, 4, 4), (96, 2, 2),
                                                  (576, 2, 2)]


@pytest.mark.parametrize('arch, c4, c4_channels, c5_channels, reduced', [
    ('large', 13, 672, 960, False),
    ('large', 13, 672, 480, True),
    ('small', 9, 288, 576, False),
    ('small', 9, 288, 288, True),
])
def test_ssdlite_taps(arch, c4, c4_channels, c5_channels, reduced):
    """SSDLite's C4 is the expansion of block 13 (Large) / 9 (Small), at stride 16."""
    last = 16 if arch == 'large' else 12
    model = MobileNetV3(arch, reduced_tail=reduced, expansion_indices=(c4, ),
                        out_indices=(last, ))
    assert model.out_channels == (c4_channels, c5_channels)
    assert model.strides == (16, 32)
    assert model.feature_info[0]['module'] == f'layers.{c4}.expand_conv'
    c4_out, c5_out = model(torch.rand(2, 3, 320, 320))
    assert c4_out.shape == (2, c4_channels, 20, 20)
    assert c5_out.shape == (2, c5_channels, 10, 10)


def test_outputs_in_network_order():
    model = MobileNetV3('large', out_indices=(4, 13), expansion_indices=(13, 7))
    # block 4, expansion of 7 (stride 8), expansion of 13 (stride 16), block 13
    assert model.out_channels == (40, 240, 672, 160)
    assert model.strides == (8, 8, 16, 32)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [40, 240, 672, 160]
    assert [o.shape[-1] for o in outs] == [8, 8, 4, 2]


def test_reduced_tail_matches_paper():
    """Dagger / RF2: C4 block output and the later blocks halved, C4 expansion kept."""
    full = MobileNetV3('large')
    reduced = MobileNetV3('large', reduced_tail=True)
    for index in range(12):
        assert full.block_specs[index] == reduced.block_specs[index]
    assert [(s.expand_channels, s.out_channels) for s in reduced.block_specs[12:]] == [
        (672, 80), (480, 80), (480, 80)]
    assert reduced.out_channels == (480, )
    small = MobileNetV3('small', reduced_tail=True)
    assert [(s.expand_channels, s.out_channels) for s in small.block_specs[8:]] == [
        (288, 48), (288, 48), (288, 48)]


@pytest.mark.parametrize('widen_factor, stem, c4_exp, last', [
    (0.35, 8, 240, 336), (0.5, 8, 336, 480), (0.75, 16, 528, 720),
    (1.25, 24, 864, 1200)])
def test_widths(widen_factor, stem, c4_exp, last):
    model = MobileNetV3('large', widen_factor=widen_factor, expansion_indices=(13, ),
                        out_indices=(0, 16))
    assert model.out_channels == (stem, c4_exp, last)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [stem, c4_exp, last]


@pytest.mark.parametrize('arch', ['large', 'small'])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_output_stride(arch, output_stride):
    last = 16 if arch == 'large' else 12
    model = MobileNetV3(arch, output_stride=output_stride, out_indices=(last, ))
    assert model.strides == (output_stride, )
    out = model(torch.rand(1, 3, 64, 64))[0]
    assert out.shape[-2:] == (64 // output_stride, 64 // output_stride)
    dilations = [s.dilation for s in model.block_specs]
    assert max(dilations) == 32 // output_stride
    # dilation is decided when blocks are built: no depthwise conv strides past OS
    for layer, spec in zip(model.layers[1:], model.block_specs):
        conv = layer.depthwise_conv.conv
        assert conv.dilation == (spec.dilation, spec.dilation)
        assert conv.stride == ((1, 1) if spec.dilation > 1 else (spec.stride, ) * 2)


def test_output_stride_16_dilates_the_last_stage_only():
    model = MobileNetV3('large', output_stride=16)
    assert [s.dilation for s in model.block_specs] == [1] * 12 + [2, 2, 2]


def test_frozen_stages():
    model = MobileNetV3('small', frozen_stages=3)
    model.train()
    for i, layer in enumerate(model.layers):
        frozen = i <= 3
        assert all(p.requires_grad is not frozen for p in layer.parameters())
        for m in layer.modules():
            if isinstance(m, _BatchNorm):
                assert m.training is not frozen
    # frozen BN statistics do not move in training
    before = model.layers[2].depthwise_conv.bn.running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    assert torch.equal(before, model.layers[2].depthwise_conv.bn.running_mean)
    assert not torch.equal(model.layers[5].depthwise_conv.bn.running_mean,
                           torch.zeros_like(model.layers[5].depthwise_conv.bn.running_mean))


def test_norm_eval():
    model = MobileNetV3('small', norm_eval=True)
    assert model.train() is model  # returns self (mmpretrain 1.2.0's returns None)
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    model.eval()
    assert all(not m.training for m in model.modules())


def test_with_cp_same_output_and_grads():
    """with_cp: each block's activations are recomputed in the backward pass (not
    kept), and the output and every gradient are those of the plain model. In
    float64, where the two can differ by rounding alone (~1e-16 relative) and a real
    difference stands out."""
    torch.manual_seed(0)
    plain = MobileNetV3('small', out_indices=(12, )).double()
    cp_model = MobileNetV3('small', out_indices=(12, ), with_cp=True).double()
    cp_model.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    weights = torch.rand(2, 576, 1, 1, dtype=torch.float64)  # a loss of every output
    runs = {}
    for name, model in (('plain', plain), ('cp', cp_model)):
        blocks = model.layers[1:model.num_blocks + 1]
        calls = dict(forward=0, backward=0)
        phase = ['forward']

        def count(*_):
            calls[phase[0]] += 1

        # a pre-hook: checkpointing's recomputation stops once it has recomputed what
        # backward needs (inside project_conv), before forward hooks would run
        hooks = [b.project_conv.register_forward_pre_hook(count) for b in blocks]
        inputs = x.clone().requires_grad_()
        y = model(inputs)[0]
        phase[0] = 'backward'
        (y * weights).sum().backward()
        for hook in hooks:
            hook.remove()
        grads = {k: p.grad for k, p in model.named_parameters()}
        runs[name] = (y, inputs.grad, grads, calls)
    n = plain.num_blocks
    assert runs['plain'][3] == dict(forward=n, backward=0)
    assert runs['cp'][3] == dict(forward=n, backward=n), 'no block was recomputed'
    (y1, gx1, g1, _), (y2, gx2, g2, _) = runs['plain'], runs['cp']
    assert_float64_close(y2, y1, 'output')
    assert_float64_close(gx2, gx1, 'input gradient')
    assert g1.keys() == g2.keys()
    for k in g1:
        assert_float64_close(g2[k], g1[k], f'gradient of {k}')


def test_act_cfg_replaces_hswish_only():
    model = MobileNetV3('large', act_cfg=dict(type='ReLU'))
    assert not any(isinstance(m, torch.nn.Hardswish) for m in model.modules())
    default = MobileNetV3('large')
    assert isinstance(default.layers[1].depthwise_conv.activate, torch.nn.ReLU)
    assert isinstance(default.layers[7].depthwise_conv.activate, torch.nn.Hardswish)


def test_norm_cfg_eps():
    model = MobileNetV3('small', norm_cfg=dict(type='BN', eps=1e-5, momentum=0.03))
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(m.eps == 1e-5 and m.momentum == 0.03 for m in bns)


def test_build_from_registry_and_init_weights():
    model = MODELS.build(dict(type='mobilenet_tasks.MobileNetV3', arch='small'))
    model.init_weights()
    bn = model.layers[0].bn
    assert torch.all(bn.weight == 1)
    assert model.eval() is model


@pytest.mark.parametrize('arch, c4, halved, last', [('large', 13, 336, 480),
                                                    ('small', 9, 144, 288)])
def test_halve_c4_expansion_is_tf_deeplab_rf2(arch, c4, halved, last):
    """TF DeepLab's mobilenet_v3_{large,small}_seg: the reduced tail with the C4 block's
    expansion halved too (Table 7's RF2 parameter counts)."""
    detection = MobileNetV3(arch, reduced_tail=True)
    seg = MobileNetV3(arch, reduced_tail=True, halve_c4_expansion=True)
    assert seg.block_specs[c4 - 1].expand_channels == halved
    assert detection.block_specs[c4 - 1].expand_channels == 2 * halved
    assert seg.block_specs[c4:] == detection.block_specs[c4:]
    assert seg.out_channels == detection.out_channels == (last, )
    with pytest.raises(ValueError, match='set reduced_tail=True as well'):
        MobileNetV3(arch, halve_c4_expansion=True)
