"""MobileNetV2, MnasNet-A1 and MobileNetV1: the baselines of the paper's tables."""
import pytest
import torch

from mobilenet_tasks.models.backbones import MnasNet, MobileNetV1, MobileNetV2


@pytest.mark.parametrize('cls, kwargs, message', [
    (MobileNetV2, dict(widen_factor=0.2), r'widen_factor must be in \[0.35, 1.4\]'),
    (MnasNet, dict(widen_factor=2.0), r'widen_factor must be in \[0.35, 1.4\]'),
    (MobileNetV1, dict(widen_factor=0.1), r'widen_factor must be in \[0.25, 1.25\]'),
    (MobileNetV2, dict(out_indices=(19, )), r'range\(0, 19\)'),
    (MnasNet, dict(out_indices=(18, )), r'range\(0, 18\)'),
    (MobileNetV1, dict(out_indices=(14, )), r'range\(0, 14\)'),
    (MobileNetV1, dict(expansion_indices=(11, )), r'have an expansion layer, \[\]'),
    (MobileNetV2, dict(expansion_indices=(1, )), 'have an expansion layer'),
    (MnasNet, dict(output_stride=64), 'output_stride must be 8, 16 or 32'),
    (MobileNetV2, dict(frozen_stages=19), r'frozen_stages must be in range\(-1, 19\)'),
])
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_mobilenet_v2_taps():
    # SSDLite-V2: C4 = expansion of block 14 ("layer_15/expansion_output"), C5 = 1280
    model = MobileNetV2(expansion_indices=(14, ), out_indices=(18, ))
    assert model.out_channels == (576, 1280)
    assert model.strides == (16, 32)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(576, 4, 4), (1280, 2, 2)]
    all_blocks = MobileNetV2(out_indices=tuple(range(19)))
    assert all_blocks.out_channels == (32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96,
                                       96, 96, 160, 160, 160, 320, 1280)


def test_mobilenet_v2_narrow_keeps_1280_and_reduced_tail():
    narrow = MobileNetV2(widen_factor=0.35, out_indices=(0, 17, 18))
    assert narrow.out_channels == (16, 112, 1280)
    reduced = MobileNetV2(reduced_tail=True, expansion_indices=(14, ),
                          out_indices=(17, 18))
    assert reduced.out_channels == (576, 160, 640)
    assert [s.out_channels for s in reduced.block_specs[13:]] == [80, 80, 80, 160]


def test_mnasnet_a1_structure():
    model = MnasNet(expansion_indices=(13, ), out_indices=(1, 16, 17))
    assert model.out_channels == (16, 672, 320, 1280)
    assert model.strides == (2, 16, 32, 32)
    first = model.layers[1]
    assert first.expand_conv is None and not first.use_residual  # SepConv, no skip
    se_blocks = [i for i, s in enumerate(model.block_specs, 1) if s.se_channels]
    assert se_blocks == [4, 5, 6, 11, 12, 13, 14, 15]
    assert model.block_specs[3].se_channels == 6  # a quarter of the 24 input channels
    assert isinstance(model.layers[4].se.gate, torch.nn.Sigmoid)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 672, 320, 1280]


def test_mobilenet_v1_structure():
    model = MobileNetV1(out_indices=(11, 13))
    assert model.out_channels == (512, 1024)
    assert model.strides == (16, 32)
    for layer in model.layers[1:]:
        assert layer.expand_conv is None and not layer.use_residual
        assert layer.project_conv.activate is not None
    outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape[1:]) for o in outs] == [(512, 4, 4), (1024, 2, 2)]


@pytest.mark.parametrize('cls', [MobileNetV2, MnasNet, MobileNetV1])
@pytest.mark.parametrize('output_stride', [8, 16])
def test_output_stride(cls, output_stride):
    model = cls(output_stride=output_stride)
    assert model.strides == (output_stride, )
    out = model(torch.rand(1, 3, 64, 64))[0]
    assert out.shape[-2:] == (64 // output_stride, 64 // output_stride)


@pytest.mark.parametrize('cls', [MobileNetV2, MnasNet, MobileNetV1])
def test_frozen_stages_and_norm_eval(cls):
    model = cls(frozen_stages=2, norm_eval=True)
    assert model.train() is model
    assert all(not p.requires_grad for layer in model.layers[:3]
               for p in layer.parameters())
    assert all(p.requires_grad for layer in model.layers[3:]
               for p in layer.parameters())
    assert all(not m.training for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


def test_mobilenet_v2_without_last_conv():
    """DeepLab's MobileNetV2 ends at block 17: no 1280-channel conv, and no unused
    parameters (which would stall DDP)."""
    full = MobileNetV2(out_indices=(17, ))
    seg = MobileNetV2(out_indices=(17, ), with_last_conv=False)
    assert len(seg.layers) == len(full.layers) - 1 == 18
    n_full = sum(p.numel() for p in full.parameters())
    n_seg = sum(p.numel() for p in seg.parameters())
    assert n_full - n_seg == 320 * 1280 + 2 * 1280  # conv + BN
    assert seg.out_channels == (320, )
    with pytest.raises(ValueError, match=r'range\(0, 18\)'):
        MobileNetV2(out_indices=(18, ), with_last_conv=False)
