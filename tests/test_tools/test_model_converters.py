"""The checkpoint converters: reference model -> convert -> ours gives the same outputs.

Every reference is built with random weights, then every BatchNorm's running mean,
running variance, weight and bias (and every Linear) is randomized, so that a wrong or
missing mapping changes the output; the max abs difference of features and logits must
be <= 1e-4.
"""
import copy
import functools
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

from mobilenet_tasks.converters import (convert_mmpretrain_mobilenet_v3, convert_timm,
                                        convert_torchvision)
from mobilenet_tasks.models.backbones import MnasNet, MobileNetV2, MobileNetV3
from mobilenet_tasks.utils.config import load_config

torchvision = pytest.importorskip('torchvision')
timm = pytest.importorskip('timm')

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4
CFG = {
    'large': 'configs/classification/mobilenet-v3-large_8xb128_in1k.py',
    'small': 'configs/classification/mobilenet-v3-small_8xb128_in1k.py',
    'v2': 'configs/classification/mobilenet-v2_8xb32_in1k.py',
    'mnasnet': 'configs/classification/mnasnet-a1_8xb32_in1k.py',
}


# -- helpers ------------------------------------------------------------------------------
def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random BN statistics and affine parameters (and Linear layers); eval mode."""
    gen = torch.Generator().manual_seed(seed)
    num_bn = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.empty(c).uniform_(0.5, 2.0, generator=gen))
                m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=gen))
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                num_bn += 1
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen)
                               / m.in_features**0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    assert num_bn > 20
    model.eval()  # not `model = model.eval()`: mmpretrain's MobileNetV3.train returns None
    return model


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> float:
    """Same shape, non-trivial values, max abs difference <= TOL; returns it."""
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    assert torch.isfinite(ref).all()
    assert ref.std() > 0.05, f'{what}: the reference output is nearly constant'
    diff = (ours - ref).abs().max().item()
    print(f'{what}: max abs diff {diff:.2e} (ref max {ref.abs().max():.2f})')
    assert diff <= TOL, f'{what}: max abs diff {diff}'
    return diff


def load_strict(model: nn.Module, state_dict: dict, prefix: str = 'backbone.'):
    """Load the ``prefix`` part of a converted state dict strictly."""
    sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    model.load_state_dict(sub, strict=True)
    return model.eval()


def save(tmp_path: Path, state_dict: dict, info, name='converted.pth') -> str:
    """Save as the tools do; the meta must hold plain str / int values only."""
    meta = info.meta()
    assert meta and all(type(v) in (str, int) for v in meta.values()), meta
    path = tmp_path / name
    torch.save({'state_dict': state_dict, 'meta': meta}, path)
    return str(path)


@functools.lru_cache(maxsize=None)
def _config(path: str):
    return load_config(path)


def build_classifier(config: str, **overrides):
    """The ImageClassifier of one of our configs (weights come from the checkpoint)."""
    cfg = copy.deepcopy(_config(str(ROOT / config)))  # parsing it is the slow part
    cfg.merge_from_dict(overrides)
    init_default_scope(cfg.get('default_scope', 'mobilenet_tasks'))
    return MODELS.build(cfg.model)


def check_classifier(path: str, ref_logits: torch.Tensor, x: torch.Tensor, config: str,
                     what: str, **overrides) -> float:
    """Load the checkpoint strictly into the config's classifier; compare logits."""
    model = build_classifier(config, **overrides)
    load_checkpoint(model, path, map_location='cpu', strict=True, logger='silent')
    model.eval()
    with torch.no_grad():
        logits = model(x, mode='tensor')
    return assert_close(logits, ref_logits, what)


# -- torchvision ----------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['large', 'small'])
@pytest.mark.parametrize('reduced_tail, dilated', [(False, False), (True, False),
                                                   (False, True), (True, True)])
def test_torchvision_mobilenet_v3(arch, reduced_tail, dilated, tmp_path):
    ref = randomize(getattr(torchvision.models, f'mobilenet_v3_{arch}')(
        weights=None, reduced_tail=reduced_tail, dilated=dilated))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feats, ref_logits = ref.features(x), ref(x)

    converted, info = convert_torchvision(ref.state_dict(), return_info=True)
    assert info.arch == f'mobilenet_v3_{arch}'
    assert info.backbone.cfg == dict(type='mobilenet_tasks.MobileNetV3', arch=arch,
                                     widen_factor=1.0, reduced_tail=reduced_tail)
    hidden = {'large': 1280, 'small': 1024}[arch] // (2 if reduced_tail else 1)
    assert info.head['mid_channels'] == [hidden]
    assert converted['head.layers.0.fc.weight'].shape[0] == hidden

    ours = load_strict(MobileNetV3(arch, reduced_tail=reduced_tail,
                                   output_stride=16 if dilated else 32), converted)
    with torch.no_grad():
        feats = ours(x)[-1]
    assert feats.shape[-1] == (4 if dilated else 2)
    assert_close(feats, ref_feats, f'torchvision {arch} rt={reduced_tail} dil={dilated}')

    # The classifier: our config (with the tail and head torchvision has).
    overrides = {}
    if reduced_tail:
        overrides = {'model.backbone.reduced_tail': True,
                     'model.head.in_channels': info.head['in_channels'],
                     'model.head.mid_channels': info.head['mid_channels']}
        assert info.config is None
    else:
        assert info.config == CFG[arch]
    if dilated:
        overrides['model.backbone.output_stride'] = 16
    check_classifier(save(tmp_path, converted, info), ref_logits, x, CFG[arch],
                     f'torchvision {arch} rt={reduced_tail} dil={dilated} logits',
                     **overrides)


def test_torchvision_mobilenet_v2(tmp_path):
    ref = randomize(torchvision.models.mobilenet_v2(weights=None))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feats, ref_logits = ref.features(x), ref(x)
    converted, info = convert_torchvision(ref.state_dict(), return_info=True)
    assert (info.arch, info.config) == ('mobilenet_v2', CFG['v2'])
    # torchvision's V2 BN eps is 1e-5, ours 1e-3: folded into the BN weights.
    assert any('eps' in note for note in info.notes)
    ours = load_strict(MobileNetV2(), converted)
    with torch.no_grad():
        assert_close(ours(x)[-1], ref_feats, 'torchvision v2')
    check_classifier(save(tmp_path, converted, info), ref_logits, x, CFG['v2'],
                     'torchvision v2 logits')


# -- timm -------------------------------------------------------------------------------------
@pytest.mark.parametrize('name, ours_cls, kwargs, config', [
    ('mobilenetv3_large_100', MobileNetV3, dict(arch='large'), CFG['large']),
    ('mobilenetv3_small_100', MobileNetV3, dict(arch='small'), CFG['small']),
    ('semnasnet_100', MnasNet, {}, CFG['mnasnet']),  # = mnasnet_a1
    ('mobilenetv2_100', MobileNetV2, {}, CFG['v2']),
])
def test_timm(name, ours_cls, kwargs, config, tmp_path):
    ref = randomize(timm.create_model(name, pretrained=False))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feats, ref_logits = ref.forward_features(x), ref(x)
    converted, info = convert_timm(ref.state_dict(), return_info=True)
    assert info.config == config
    assert info.backbone.cfg == dict(type=f'mobilenet_tasks.{ours_cls.__name__}',
                                     widen_factor=1.0, reduced_tail=False, **kwargs)
    ours = load_strict(ours_cls(**kwargs), converted)
    with torch.no_grad():
        assert_close(ours(x)[-1], ref_feats, f'timm {name}')
    check_classifier(save(tmp_path, converted, info), ref_logits, x, config,
                     f'timm {name} logits')


def test_timm_bn_eps_folding():
    """timm's BN eps is 1e-5: unfolded, our eps 1e-3 changes the output; folded (the
    default), it does not; with ``target_eps=1e-5`` it loads into a model built with
    that eps."""
    ref = randomize(timm.create_model('mobilenetv3_small_100', pretrained=False))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feats = ref.forward_features(x)
        unfolded = load_strict(MobileNetV3('small'),
                               convert_timm(ref.state_dict(), target_eps=1e-5))
        assert (unfolded(x)[-1] - ref_feats).abs().max() > 10 * TOL
        folded = load_strict(MobileNetV3('small'), convert_timm(ref.state_dict()))
        assert_close(folded(x)[-1], ref_feats, 'timm small, eps folded')
        eps5 = load_strict(MobileNetV3('small', norm_cfg=dict(type='BN', eps=1e-5)),
                           convert_timm(ref.state_dict(), target_eps=1e-5))
        assert_close(eps5(x)[-1], ref_feats, 'timm small, target eps 1e-5')


# -- mmpretrain -----------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['small', 'large'])
def test_mmpretrain_backbone(arch):
    from mmpretrain.models.backbones import MobileNetV3 as MMPretrainMobileNetV3
    ref = randomize(MMPretrainMobileNetV3(arch))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feats = ref(x)[-1]
    checkpoint = {'state_dict': {f'backbone.{k}': v for k, v in ref.state_dict().items()}}
    converted, info = convert_mmpretrain_mobilenet_v3(checkpoint['state_dict'],
                                                      return_info=True)
    assert info.arch == arch and info.head is None
    assert not any(k.startswith('head.') for k in converted)
    ours = load_strict(MobileNetV3(arch), converted)
    with torch.no_grad():
        assert_close(ours(x)[-1], ref_feats, f'mmpretrain {arch}')


def test_mmpretrain_classifier_via_tool(tmp_path, monkeypatch, capsys):
    """mmpretrain's own MobileNetV3-Large classifier config, converted with the tool
    (run in-process), loads strictly into ours and gives the same logits."""
    from mmengine.hub import get_config
    cfg = get_config('mmpretrain::mobilenet_v3/mobilenet-v3-large_8xb128_in1k.py')
    init_default_scope('mmpretrain')
    ref = randomize(MODELS.build(cfg.model))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_logits = ref(x, mode='tensor')
    src, dst = tmp_path / 'mmpretrain.pth', tmp_path / 'ours.pth'
    torch.save({'state_dict': ref.state_dict(), 'meta': {'epoch': 600}}, src)
    monkeypatch.setattr(sys, 'argv', ['mmpretrain_mobilenet_v3.py', str(src), str(dst)])
    runpy.run_path(str(ROOT / 'tools/model_converters/mmpretrain_mobilenet_v3.py'),
                   run_name='__main__')
    out = capsys.readouterr().out
    assert 'mmpretrain large' in out and CFG['large'] in out
    check_classifier(str(dst), ref_logits, x, CFG['large'], 'mmpretrain large logits')


# -- mismatches ----------------------------------------------------------------------------
def test_wrong_arch_raises():
    small = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    with pytest.raises(ValueError, match=r"does not match arch 'mobilenet_v3_large': "
                       r'it has 11 blocks.* has 15\. It matches arch '
                       r"'mobilenet_v3_small'.*pass --arch mobilenet_v3_small"):
        convert_torchvision(small, arch='mobilenet_v3_large')
    # The same count of blocks, other shapes: says which tensor differs.
    v2 = timm.create_model('mobilenetv2_100', pretrained=False).state_dict()
    with pytest.raises(ValueError, match=r"does not match arch 'mnasnet_a1': it has 17 "
                       r'blocks.*It matches arch .mobilenetv2.'):
        convert_timm(v2, arch='mnasnet_a1')
    # mmpretrain's small_050 keeps a 16-channel stem: none of ours.
    from mmpretrain.models.backbones import MobileNetV3 as MMPretrainMobileNetV3
    sd = {f'backbone.{k}': v for k, v in MMPretrainMobileNetV3('small_050').state_dict()
          .items()}
    with pytest.raises(ValueError, match=r'matches none of our backbones.*layers\.0\.conv'
                       r'\.weight has shape \(16, 3, 3, 3\).*\(8, 3, 3, 3\)'):
        convert_mmpretrain_mobilenet_v3(sd)
    with pytest.raises(ValueError, match='arch must be one of'):
        convert_torchvision(small, arch='mobilenet_v3_medium')


def test_reduced_tail_against_full_tail_raises():
    reduced = torchvision.models.mobilenet_v3_large(weights=None,
                                                    reduced_tail=True).state_dict()
    full = convert_torchvision(reduced)  # inferred: reduced tail
    with pytest.raises(RuntimeError, match='size mismatch'):
        load_strict(MobileNetV3('large'), full)


def test_unknown_keys_raise():
    sd = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    sd['features.0.extra.weight'] = torch.zeros(1)
    with pytest.raises(ValueError, match=r'have no place in ours: features\.0\.extra'):
        convert_torchvision(sd)
    with pytest.raises(ValueError, match='not a timm MobileNet'):
        convert_timm(torchvision.models.mobilenet_v2(weights=None).state_dict())


# -- the command line, end to end ---------------------------------------------------------
def test_torchvision_tool_end_to_end(tmp_path):
    ref = randomize(torchvision.models.mobilenet_v3_large(weights=None))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref_feats, ref_logits = ref.features(x), ref(x)
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(ref.state_dict(), src)
    result = subprocess.run(
        [sys.executable, str(ROOT / 'tools/model_converters/torchvision_mobilenet.py'),
         str(src), str(dst)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'torchvision mobilenet_v3_large' in result.stdout
    assert CFG['large'] in result.stdout

    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['source_arch'] == 'mobilenet_v3_large'
    assert ckpt['meta']['config'] == CFG['large']
    check_classifier(str(dst), ref_logits, x, CFG['large'], 'tool: torchvision logits')
    backbone = MobileNetV3('large', init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                                  prefix='backbone.'))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every tensor it loads
    try:
        backbone.init_weights()
    finally:
        logger.setLevel(level)
    backbone.eval()
    with torch.no_grad():
        assert_close(backbone(x)[-1], ref_feats, 'tool: torchvision backbone init_cfg')
