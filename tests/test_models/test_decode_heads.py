"""Lite R-ASPP and R-ASPP decode heads: arguments, shapes, values, torchvision, mmseg."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmseg.models.decode_heads import ASPPHead
from mmseg.structures import SegDataSample

from mobilenet_tasks.models.decode_heads import LRASPPHead, RASPPHead
from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.testing import assert_float64_close


def _lraspp(**kwargs):
    cfg = dict(in_channels=(8, 16), channels=12, num_classes=5)
    cfg.update(kwargs)
    return LRASPPHead(**cfg)


def _randomize_bn(module):
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def _samples(n, h, w, num_classes):
    samples = []
    for _ in range(n):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(s)
    return samples


@pytest.mark.parametrize('kwargs, match', [
    (dict(in_channels=16), 'in_channels'),
    (dict(in_channels=(8, 16, 32), in_index=(0, 1, 2)), 'in_channels'),
    (dict(in_index=(0, )), 'in_index'),
    (dict(channels=0), 'channels'),
    (dict(pool_kernel=(49, 0)), 'pool_kernel'),
    (dict(pool_kernel=(3, 3, 3)), 'pool_kernel'),
    (dict(pool_stride=-1), 'pool_stride'),
    (dict(input_transform='resize_concat'), 'multiple_select'),
])
def test_lraspp_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _lraspp(**kwargs)


def test_raspp_bad_arguments():
    with pytest.raises(ValueError, match='dilations'):
        RASPPHead(in_channels=16, num_classes=3, dilations=(1, 6))
    with pytest.raises(ValueError, match='in_channels'):
        RASPPHead(in_channels=(8, 16), num_classes=3)
    with pytest.raises(ValueError, match='channels'):
        RASPPHead(in_channels=16, channels=-2, num_classes=3)


def test_lraspp_small_feature_map_raises_then_global_pool_works():
    low, high = torch.randn(2, 8, 16, 32), torch.randn(2, 16, 8, 16)  # 128x256 input
    head = _lraspp().eval()
    with pytest.raises(ValueError, match=r'8x16.*49x49.*global_pool=True'):
        head([low, high])
    out = _lraspp(global_pool=True).eval()([low, high])
    assert out.shape == (2, 5, 16, 32)


@pytest.mark.parametrize('low_hw, high_hw, kwargs', [
    ((16, 32), (8, 16), dict(global_pool=True)),     # 128x256 input, OS 16
    ((16, 32), (4, 8), dict(global_pool=True)),      # 128x256 input, OS 32
    ((33, 65), (17, 33), dict(global_pool=True)),    # odd 257x513 input
    ((128, 256), (64, 128), dict()),                 # 1024x2048: paper's 49x49 pool
    ((97, 129), (49, 65), dict()),                   # exactly the kernel's height
])
def test_lraspp_output_shapes(low_hw, high_hw, kwargs):
    head = _lraspp(**kwargs).eval()
    with torch.no_grad():
        out = head([torch.randn(1, 8, *low_hw), torch.randn(1, 16, *high_hw)])
    assert out.shape == (1, 5, *low_hw)
    assert torch.isfinite(out).all()


def test_lraspp_large_pool_gate_is_hand_computation():
    head = LRASPPHead(in_channels=(1, 1), channels=1, num_classes=3,
                      pool_kernel=3, pool_stride=1)
    head.scale_conv.weight.data.fill_(0.5)
    head.double()  # float64: the hand computation and the head agree to its rounding
    high = torch.arange(16., dtype=torch.float64).reshape(1, 1, 4, 4)
    # 3x3 windows of a 4x4 ramp: means are the window centres
    pooled = torch.tensor([[5., 6.], [9., 10.]], dtype=torch.float64)
    s = torch.sigmoid(0.5 * pooled)
    # bilinear 2 -> 4, align_corners=False: sources -0.25 (clamped), 0.25, 0.75, 1.25
    up = torch.tensor([[1., 0.], [.75, .25], [.25, .75], [0., 1.]], dtype=torch.float64)
    expected = up @ s @ up.T
    gate = head.gate(high)
    assert gate.shape == (1, 1, 4, 4)
    assert_float64_close(gate[0, 0], expected, 'gate')
    # the whole head, by hand, with the stride (16, 20) default pooled to one cell
    head = _lraspp(dropout_ratio=0).eval()
    _randomize_bn(head)
    head.double()
    low = torch.randn(1, 8, 10, 12, dtype=torch.float64)
    high = torch.randn(1, 16, 49, 49, dtype=torch.float64)
    with torch.no_grad():
        gate = torch.sigmoid(head.scale_conv(high.mean((2, 3), keepdim=True)))
        x = F.interpolate(head.cbr(high) * gate, size=(10, 12), mode='bilinear')
        expected = head.conv_seg(x) + head.low_classifier(low)
        assert_float64_close(head([low, high]), expected, 'head')


def test_lraspp_equals_torchvision_with_global_pool():
    from torchvision.models.segmentation.lraspp import LRASPPHead as TVHead
    low_c, high_c, num_classes, inter = 40, 96, 7, 32
    tv = TVHead(low_c, high_c, num_classes, inter)
    for p in tv.parameters():
        p.data.normal_(0, 0.2)
    _randomize_bn(tv)
    ours = LRASPPHead(in_channels=(low_c, high_c), channels=inter,
                      num_classes=num_classes, global_pool=True, dropout_ratio=0)
    mapping = {
        'cbr.conv.weight': 'cbr.0.weight',
        'cbr.bn.weight': 'cbr.1.weight',
        'cbr.bn.bias': 'cbr.1.bias',
        'cbr.bn.running_mean': 'cbr.1.running_mean',
        'cbr.bn.running_var': 'cbr.1.running_var',
        'cbr.bn.num_batches_tracked': 'cbr.1.num_batches_tracked',
        'scale_conv.weight': 'scale.1.weight',
        'low_classifier.weight': 'low_classifier.weight',
        'low_classifier.bias': 'low_classifier.bias',
        'conv_seg.weight': 'high_classifier.weight',
        'conv_seg.bias': 'high_classifier.bias',
    }
    tv_state = tv.state_dict()
    assert set(mapping.values()) == set(tv_state)
    ours.load_state_dict({k: tv_state[v] for k, v in mapping.items()}, strict=True)
    tv.eval(), ours.eval()
    tv.double(), ours.double()  # float64: see mobilenet_tasks/testing.py
    low = torch.randn(2, low_c, 33, 47, dtype=torch.float64)
    high = torch.randn(2, high_c, 17, 24, dtype=torch.float64)
    with torch.no_grad():
        expected = tv({'low': low, 'high': high})
        got = ours([low, high])
    assert got.shape == expected.shape == (2, num_classes, 33, 47)
    assert expected.std() > 0.1  # outputs a wrong mapping would change
    diff = assert_float64_close(got, expected, 'vs torchvision')
    print(f'max abs diff vs torchvision (float64): {diff:.3g}')


def test_raspp_is_aspp_with_1x1_projection_and_trains():
    head = RASPPHead(in_channels=24, channels=16, num_classes=4)
    with DefaultScope.overwrite_default_scope('mmseg'):  # mmseg's own head needs it
        aspp = ASPPHead(in_channels=24, channels=16, num_classes=4, dilations=(1, ),
                        norm_cfg=dict(type='BN'))
    ours_state, aspp_state = head.state_dict(), aspp.state_dict()
    assert set(ours_state) == set(aspp_state)
    differ = {k for k in ours_state if ours_state[k].shape != aspp_state[k].shape}
    assert differ == {'bottleneck.conv.weight'}
    assert head.bottleneck.conv.kernel_size == (1, 1)
    assert head.image_pool[1].bn is not None and head.aspp_modules[0].bn is not None
    # same branches, and with the 3x3 bottleneck reduced to its centre tap, same output
    _randomize_bn(head)
    aspp_state = dict(head.state_dict())
    centre = torch.zeros(16, 32, 3, 3)
    centre[:, :, 1, 1] = head.bottleneck.conv.weight.data[:, :, 0, 0]
    aspp_state['bottleneck.conv.weight'] = centre
    aspp.load_state_dict(aspp_state)
    feats = [torch.randn(2, 8, 16, 32), torch.randn(2, 24, 8, 16)]
    head.eval(), aspp.eval()
    with torch.no_grad():
        out = head(feats)
        head64, aspp64 = copy.deepcopy(head).double(), copy.deepcopy(aspp).double()
        feats64 = [f.double() for f in feats]
        assert_float64_close(head64(feats64), aspp64(feats64), 'R-ASPP vs ASPP')
    assert out.shape == (2, 4, 8, 16)
    # a loss step through mmseg's loss_by_feat
    head.train()
    losses = head.loss_by_feat(head(feats), _samples(2, 128, 256, 4))
    assert set(losses) == {'loss_ce', 'acc_seg'}
    assert torch.isfinite(losses['loss_ce']) and losses['loss_ce'] > 0
    losses['loss_ce'].backward()
    assert head.bottleneck.conv.weight.grad.abs().sum() > 0
    assert head.image_pool[1].conv.weight.grad.abs().sum() > 0


def test_registered_in_our_scope():
    assert MODELS.get('LRASPPHead') is LRASPPHead
    assert MODELS.get('RASPPHead') is RASPPHead


@pytest.mark.parametrize('decode_head', [
    dict(type='mobilenet_tasks.LRASPPHead', in_channels=(40, 960), in_index=(0, 1),
         channels=128, global_pool=True),
    dict(type='mobilenet_tasks.RASPPHead', in_channels=960, in_index=1, channels=64),
])
def test_heads_in_mmseg_encoder_decoder(decode_head):
    from mmseg.registry import MODELS as MMSEG_MODELS
    cfg = dict(
        type='EncoderDecoder',
        data_preprocessor=dict(
            type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375], bgr_to_rgb=True, size=(128, 256), pad_val=0,
            seg_pad_val=255),
        backbone=dict(type='mobilenet_tasks.MobileNetV3', arch='large',
                      output_stride=16, out_indices=(6, 16)),
        decode_head=dict(num_classes=3, **decode_head),
        train_cfg=dict(), test_cfg=dict(mode='whole'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MMSEG_MODELS.build(ConfigDict(cfg))  # as a config file gives it
    assert model.backbone.strides == (8, 16)
    assert model.backbone.out_channels == (40, 960)
    model.init_weights()
    data = dict(inputs=[torch.randint(0, 256, (3, 128, 256), dtype=torch.uint8)
                        for _ in range(2)],
                data_samples=_samples(2, 128, 256, 3))
    model.train()
    batch = model.data_preprocessor(data, True)
    losses = model(**batch, mode='loss')
    assert torch.isfinite(losses['decode.loss_ce'])
    losses['decode.loss_ce'].backward()
    model.eval()
    with torch.no_grad():
        preds = model.predict(**model.data_preprocessor(data, False))
    assert len(preds) == 2
    assert preds[0].seg_logits.data.shape == (3, 128, 256)
    assert preds[0].pred_sem_seg.data.shape == (1, 128, 256)
    assert int(preds[0].pred_sem_seg.data.max()) < 3


@pytest.mark.parametrize('scope', ['mobilenet_tasks', 'mmdet', 'mmseg'])
def test_default_loss_is_mmsegs_whatever_the_default_scope(scope):
    from mmseg.models.losses import CrossEntropyLoss
    with DefaultScope.overwrite_default_scope(scope):
        heads = [_lraspp(global_pool=True),
                 MODELS.build(dict(type='mobilenet_tasks.RASPPHead', in_channels=16,
                              num_classes=5))]
    for head in heads:
        assert type(head.loss_decode) is CrossEntropyLoss
        assert head.loss_decode.loss_name == 'loss_ce'


def test_mmseg_lraspp_head_fails_on_small_maps_ours_does_not():
    """UPSTREAM.md: mmseg 1.2.2's LRASPPHead hard-codes AvgPool2d(49, stride=(16, 20)),
    so a 256x512 image (a 32x64 last map at output stride 8) fails inside it. Our head
    takes the pooling as arguments and pools globally where asked. If this test starts
    failing at the first assertion, mmseg fixed its head."""
    from mmseg.models.decode_heads import LRASPPHead as MMSegLRASPPHead
    with DefaultScope.overwrite_default_scope('mmseg'):
        stock = MMSegLRASPPHead(in_channels=(16, 24, 576), in_index=(0, 1, 2),
                                channels=32, input_transform='multiple_select',
                                num_classes=5).eval()
    feats = [torch.randn(1, 16, 128, 256), torch.randn(1, 24, 64, 128),
             torch.randn(1, 576, 32, 64)]
    with pytest.raises(RuntimeError, match='Output size is too small'):
        stock(feats)
    ours = _lraspp(in_channels=(24, 576), global_pool=True).eval()
    assert ours([feats[1], feats[2]]).shape == (1, 5, 64, 128)
