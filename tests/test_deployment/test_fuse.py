"""Conv-BN folding (mobilenet_tasks.deployment.fuse): the folded models compute what
the unfolded ones do, with no BatchNorm left; what cannot be folded is left and said."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import revert_sync_batchnorm
from torch.nn.modules.batchnorm import _BatchNorm

from mobilenet_tasks.deployment.fuse import fuse_conv_bn
from mobilenet_tasks.testing import (assert_float64_close, float32_tolerance, max_abs,
                                     max_abs_diff, randomize_)
from mobilenet_tasks.utils.config import build_model

ROOT = Path(__file__).resolve().parents[2]


def _bns(model):
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def _flat(out):
    """Tensors of a model's tensor-mode output (nested tuples / lists), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _flat(item)]


@pytest.mark.parametrize('config, shape', [
    ('configs/ssdlite_v3_large_demo.py', (128, 128)),
    ('configs/lraspp_v3_large_demo.py', (64, 128)),
    # SyncBN (the Cityscapes recipe): folded as it is, without reverting it first
    ('configs/lraspp_v3_small_cityscapes.py', (64, 64)),
    # R-ASPP (Table 7's baseline head: ASPP-like 1x1 + pooled branches, ReLU6 V2)
    ('configs/raspp_v2_cityscapes.py', (64, 64)),
])
def test_fused_model_equals_unfused(config, shape):
    """Folding is exact arithmetic: in float64 the folded model equals the unfolded one
    to float64 rounding. In float32 (what is deployed) the folded weights round
    differently, so the folded outputs may differ from the unfolded ones by what float32
    rounding of this network gives on this CPU (``float32_tolerance``), no more."""
    model = build_model(str(ROOT / config), cfg_options=(
        {'model.decode_head.global_pool': True} if 'small' in config else None))
    model.eval()
    num_bn = randomize_(model, torch.Generator().manual_seed(0))
    assert num_bn == len(_bns(model)) > 0
    x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(1))

    def outputs(m, inputs):
        with torch.no_grad():
            return _flat(m(inputs, mode='tensor'))

    ref32 = outputs(model, x)
    model64 = copy.deepcopy(model).double()
    ref64 = outputs(model64, x.double())
    for name, m in (('float32', model), ('float64', model64)):
        fused = copy.deepcopy(m)
        report = fuse_conv_bn(fused)
        assert report.num_folded == num_bn and report.num_left == 0, str(report)
        assert not _bns(fused)
        got = outputs(fused, x.to(next(m.parameters()).dtype))
        assert len(got) == len(ref32) > 0
        if name == 'float64':
            for r, g in zip(ref64, got):
                assert max_abs(r) > 1e-2  # random BN statistics give the outputs a scale
                assert_float64_close(g, r, config)
        else:  # each output against its own float32 rounding
            for i, (r32, r64, g) in enumerate(zip(ref32, ref64, got)):
                tol, diff = float32_tolerance(r32, r64), max_abs_diff(r32, g)
                print(f'{config} output {i}: float32 folded vs unfolded {diff:.3g} '
                      f'(bound {tol:.3g}, scale {max_abs(r64):.3g})')
                assert diff <= tol, (config, i, diff, tol)


def test_reverted_sync_batchnorm_is_folded():
    model = revert_sync_batchnorm(
        nn.Sequential(nn.Conv2d(3, 8, 3), nn.SyncBatchNorm(8), nn.ReLU())).eval()
    randomize_(model, torch.Generator().manual_seed(0))
    model.double()  # float64: folding is exact up to float64 rounding
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    ref = model(x)
    assert fuse_conv_bn(model).num_folded == 1 and not _bns(model)
    assert_float64_close(model(x), ref)


def test_training_mode_refused():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    with pytest.raises(RuntimeError, match=r'eval mode.*model\.eval\(\)'):
        fuse_conv_bn(model)
    model.eval()
    model[1].train()  # one module left in training mode is enough to refuse
    with pytest.raises(RuntimeError, match='1 is in training mode'):
        fuse_conv_bn(model)
    assert isinstance(model[1], nn.BatchNorm2d)  # nothing changed


def test_norm_before_conv_is_not_folded():
    """A ConvModule that normalises before convolving registers ``conv`` before
    ``bn`` too; its BN must stay (mmcv's fuse_conv_bn pairs by registration)."""
    module = ConvModule(4, 8, 3, norm_cfg=dict(type='BN'),
                        order=('norm', 'act', 'conv')).eval()
    randomize_(module, torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 8, 8)
    ref = module(x)
    report = fuse_conv_bn(module)
    assert report.num_folded == 0 and list(report.left) == ['bn']
    assert 'before the convolution' in report.left['bn']
    assert torch.equal(module(x), ref)  # untouched: the very same computation
    with pytest.raises(ValueError, match='1 left'):
        fuse_conv_bn(module, strict=True)


def test_efficient_conv_bn_eval_module():
    """mmcv's efficient_conv_bn_eval path must not see the replaced BN afterwards."""
    module = ConvModule(4, 8, 3, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'),
                        efficient_conv_bn_eval=True).eval()
    randomize_(module, torch.Generator().manual_seed(0))
    module.double()
    x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    ref = module(x)
    assert fuse_conv_bn(module).num_folded == 1
    assert_float64_close(module(x), ref)


def test_what_cannot_be_folded_is_reported():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8, affine=False),  # folded
        nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8, track_running_stats=False),
        nn.ConvTranspose2d(8, 8, 2), nn.BatchNorm2d(8),
        nn.ReLU(), nn.BatchNorm2d(8)).eval()
    with torch.no_grad():  # randomize_ needs affine BNs with statistics
        model[1].running_mean.normal_(0, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    model.double()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    ref = model(x)
    report = fuse_conv_bn(model)
    assert report.folded == ['0 <- 1']
    assert set(report.left) == {'3', '5', '7'}
    assert 'batch statistics' in report.left['3']
    assert 'ConvTranspose2d' in report.left['5']
    assert 'does not directly follow a convolution' in report.left['7']
    assert_float64_close(model(x), ref)
