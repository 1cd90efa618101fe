"""The checkpoint converters: reference model -> convert -> ours gives the same outputs.

Every reference is built with random weights, then every BatchNorm's running mean,
running variance, weight and bias (and every Linear) is randomized, so that a wrong or
missing mapping changes the output. Both sides then run in float64 (the random values
are drawn in float32, so that a float32 checkpoint holds them exactly): the features
and logits must agree to ``FLOAT64_RTOL`` (1e-9) of their scale, where float64 rounding
gives ~1e-13 and anything a converter could get wrong, down to a BN eps folded in
float32, gives 1e-7 or more (see mobilenet_tasks/testing.py).
"""
import copy
import functools
import os
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

from mobilenet_tasks.converters import (convert_mmpretrain_mobilenet_v3, convert_timm,
                                        convert_torchvision)
from mobilenet_tasks.models.backbones import MnasNet, MobileNetV2, MobileNetV3
from mobilenet_tasks.utils.config import load_config
from mobilenet_tasks.testing import (assert_float64_close, float64_tolerance, max_abs_diff,
                                     randomize_)

torchvision = pytest.importorskip('torchvision')
timm = pytest.importorskip('timm')

ROOT = Path(__file__).resolve().parents[2]
CFG = {
    'large': 'configs/classification/mobilenet-v3-large_8xb128_in1k.py',
    'small': 'configs/classification/mobilenet-v3-small_8xb128_in1k.py',
    'v2': 'configs/classification/mobilenet-v2_8xb32_in1k.py',
    'mnasnet': 'configs/classification/mnasnet-a1_8xb32_in1k.py',
}


# -- helpers ----------------------------------------------------------------------------
def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """Random BN statistics and affine parameters (and Linear layers), drawn in
    float32; then float64 (values a float32 checkpoint holds exactly), eval mode."""
    gen = torch.Generator().manual_seed(seed)
    num_bn = randomize_(model, gen, convs=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen)
                               / m.in_features**0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    assert num_bn > 20
    # Not `model = model.eval()`: mmpretrain's MobileNetV3.train returns None.
    model.eval()
    model.double()
    return model


def inputs() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, dtype=torch.float64)


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> float:
    """Same shape, non-trivial values, both float64, max abs difference within
    ``float64_tolerance``; returns it."""
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    assert torch.isfinite(ref).all()
    assert ref.std() > 0.05, f'{what}: the reference output is nearly constant'
    diff = assert_float64_close(ours, ref, what)
    print(f'{what}: max abs diff {diff:.2e} (ref max {ref.abs().max():.2f}, float64)')
    return diff


def load_strict(model: nn.Module, state_dict: dict, prefix: str = 'backbone.'):
    """Load the ``prefix`` part of a converted state dict strictly, into ``model``
    made float64 first (loading into float32 would round the values)."""
    sub = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    model.double()
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


def check_classifier(path: str, x: torch.Tensor, ref_feats: torch.Tensor,
                     ref_logits: torch.Tensor, config: str, what: str, **overrides):
    """Load the checkpoint with ``load_checkpoint(strict=True)`` into the classifier of
    ``config``; compare its backbone's last output and its logits with the reference's.

    Returns:
        The classifier's backbone (ours), for further checks.
    """
    model = build_classifier(config, **overrides).double()  # before loading: exact
    load_checkpoint(model, path, map_location='cpu', strict=True, logger='silent')
    model.eval()
    with torch.no_grad():
        feats, logits = model.backbone(x)[-1], model(x, mode='tensor')
    assert_close(feats, ref_feats, what)
    assert_close(logits, ref_logits, f'{what} logits')
    return model.backbone


# -- torchvision ------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['large', 'small'])
@pytest.mark.parametrize('reduced_tail, dilated', [(False, False), (True, False),
                                                   (False, True), (True, True)])
def test_torchvision_mobilenet_v3(arch, reduced_tail, dilated, tmp_path):
    ref = randomize(getattr(torchvision.models, f'mobilenet_v3_{arch}')(
        weights=None, reduced_tail=reduced_tail, dilated=dilated))
    x = inputs()
    with torch.no_grad():
        ref_feats, ref_logits = ref.features(x), ref(x)
    assert ref_feats.shape[-1] == (4 if dilated else 2)

    converted, info = convert_torchvision(ref.state_dict(), return_info=True)
    assert info.arch == f'mobilenet_v3_{arch}'
    assert info.backbone.cfg == dict(type='mobilenet_tasks.MobileNetV3', arch=arch,
                                     widen_factor=1.0, reduced_tail=reduced_tail)
    # torchvision's classifier: Linear to 1280 (1024 Small; half with the reduced tail),
    # h-swish, dropout, Linear: mmpretrain's StackedLinearClsHead layers.0 / layers.1.
    hidden = {'large': 1280, 'small': 1024}[arch] // (2 if reduced_tail else 1)
    assert info.head == dict(type='StackedLinearClsHead', in_channels=(
        {'large': 960, 'small': 576}[arch] // (2 if reduced_tail else 1)),
        mid_channels=[hidden], num_classes=1000)
    assert sorted(k for k in converted if k.startswith('head.')) == [
        'head.layers.0.fc.bias', 'head.layers.0.fc.weight', 'head.layers.1.fc.bias',
        'head.layers.1.fc.weight']

    # Ours: the config's classifier, with the tail, dilation and head torchvision has.
    overrides = {}
    if reduced_tail:  # no config builds it: override ours
        assert info.config is None
        overrides = {'model.backbone.reduced_tail': True,
                     'model.head.in_channels': info.head['in_channels'],
                     'model.head.mid_channels': info.head['mid_channels']}
    else:
        assert info.config == CFG[arch]
    if dilated:
        overrides['model.backbone.output_stride'] = 16
    backbone = check_classifier(
        save(tmp_path, converted, info), x, ref_feats, ref_logits, CFG[arch],
        f'torchvision {arch} rt={reduced_tail} dil={dilated}', **overrides)
    assert isinstance(backbone, MobileNetV3)
    assert (backbone.reduced_tail, backbone.output_stride) == (reduced_tail,
                                                               16 if dilated else 32)


def test_torchvision_mobilenet_v2(tmp_path):
    ref = randomize(torchvision.models.mobilenet_v2(weights=None))
    x = inputs()
    with torch.no_grad():
        ref_feats, ref_logits = ref.features(x), ref(x)
    converted, info = convert_torchvision(ref.state_dict(), return_info=True)
    assert (info.arch, info.config) == ('mobilenet_v2', CFG['v2'])
    # torchvision's V2 BN eps is 1e-5, ours 1e-3: folded into the BN weights.
    assert any('eps 1e-05 is folded' in note for note in info.notes)
    backbone = check_classifier(save(tmp_path, converted, info), x, ref_feats,
                                ref_logits, CFG['v2'], 'torchvision v2')
    assert isinstance(backbone, MobileNetV2)


# -- timm -------------------------------------------------------------------------------
@pytest.mark.parametrize('name, ours_cls, kwargs, config', [
    ('mobilenetv3_large_100', MobileNetV3, dict(arch='large'), CFG['large']),
    ('mobilenetv3_small_100', MobileNetV3, dict(arch='small'), CFG['small']),
    ('semnasnet_100', MnasNet, {}, CFG['mnasnet']),  # = mnasnet_a1
    ('mobilenetv2_100', MobileNetV2, {}, CFG['v2']),
])
def test_timm(name, ours_cls, kwargs, config, tmp_path):
    ref = randomize(timm.create_model(name, pretrained=False))
    x = inputs()
    with torch.no_grad():
        ref_feats, ref_logits = ref.forward_features(x), ref(x)
    converted, info = convert_timm(ref.state_dict(), return_info=True)
    assert info.config == config
    assert info.backbone.cfg == dict(type=f'mobilenet_tasks.{ours_cls.__name__}',
                                     widen_factor=1.0, reduced_tail=False, **kwargs)
    backbone = check_classifier(save(tmp_path, converted, info), x, ref_feats,
                                ref_logits, config, f'timm {name}')
    assert isinstance(backbone, ours_cls)


def test_timm_bn_eps_folding():
    """timm's BN eps is 1e-5: unfolded, our eps 1e-3 changes the output; folded (the
    default), it does not; with ``target_eps=1e-5`` it loads into a model built with
    that eps."""
    ref = randomize(timm.create_model('mobilenetv3_small_100', pretrained=False))
    x = inputs()
    with torch.no_grad():
        ref_feats = ref.forward_features(x)
        ours = load_strict(MobileNetV3('small'),
                           convert_timm(ref.state_dict(), target_eps=1e-5))
        # eps 1e-5 read as 1e-3 moves the features by ~1e-3 of their scale: 10^6 times
        # the float64 bound
        assert max_abs_diff(ours(x)[-1], ref_feats) > 1e5 * float64_tolerance(ref_feats)
        load_strict(ours, convert_timm(ref.state_dict()))
        assert_close(ours(x)[-1], ref_feats, 'timm small, eps folded')
        eps5 = load_strict(MobileNetV3('small', norm_cfg=dict(type='BN', eps=1e-5)),
                           convert_timm(ref.state_dict(), target_eps=1e-5))
        assert_close(eps5(x)[-1], ref_feats, 'timm small, target eps 1e-5')


# -- mmpretrain -------------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['small', 'large'])
def test_mmpretrain_backbone(arch):
    from mmpretrain.models.backbones import MobileNetV3 as MMPretrainMobileNetV3
    ref = randomize(MMPretrainMobileNetV3(arch))
    x = inputs()
    with torch.no_grad():
        ref_feats = ref(x)[-1]
    checkpoint = {'state_dict': {f'backbone.{k}': v
                                 for k, v in ref.state_dict().items()}}
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
    x = inputs()
    with torch.no_grad():
        ref_feats, ref_logits = ref.backbone(x)[-1], ref(x, mode='tensor')
    src, dst = tmp_path / 'mmpretrain.pth', tmp_path / 'ours.pth'
    torch.save({'state_dict': ref.state_dict(), 'meta': {'epoch': 600}}, src)
    monkeypatch.setattr(sys, 'argv', ['mmpretrain_mobilenet_v3.py', str(src), str(dst)])
    runpy.run_path(str(ROOT / 'tools/model_converters/mmpretrain_mobilenet_v3.py'),
                   run_name='__main__')
    out = capsys.readouterr().out
    assert 'mmpretrain large' in out and CFG['large'] in out
    check_classifier(str(dst), x, ref_feats, ref_logits, CFG['large'],
                     'mmpretrain classifier large')


# -- mismatches -------------------------------------------------------------------------
def test_wrong_arch_raises():
    small = torchvision.models.mobilenet_v3_small(weights=None).state_dict()
    with pytest.raises(ValueError, match=r"does not match arch 'mobilenet_v3_large': "
                       r'it has 11 blocks.* has 15\. It matches arch '
                       r"'mobilenet_v3_small'.*pass --arch mobilenet_v3_small"):
        convert_torchvision(small, arch='mobilenet_v3_large')
    v2 = timm.create_model('mobilenetv2_100', pretrained=False).state_dict()
    with pytest.raises(ValueError, match=r"does not match arch 'mnasnet_a1': it has 17 "
                       r'blocks.*It matches arch .mobilenetv2.'):
        convert_timm(v2, arch='mnasnet_a1')
    # The same blocks, other shapes (timm's mobilenetv3_rw rounds the SE differently):
    # says which tensor differs, ours and the source's.
    rw = timm.create_model('mobilenetv3_rw', pretrained=False).state_dict()
    with pytest.raises(ValueError, match=r"does not match arch 'mobilenetv3_large': 9 "
                       r'tensors differ .*layers\.4\.se\.conv1\.weight has shape '
                       r'\(18, 72, 1, 1\) where .* has \(24, 72, 1, 1\) \(source '
                       r'blocks\.2\.0\.se\.conv_reduce\.weight\)\. It matches none'):
        convert_timm(rw, arch='mobilenetv3_large')
    # mmpretrain's small_050 keeps a 16-channel stem: none of ours.
    from mmpretrain.models.backbones import MobileNetV3 as MMPretrainMobileNetV3
    sd = {f'backbone.{k}': v for k, v in MMPretrainMobileNetV3('small_050').state_dict()
          .items()}
    with pytest.raises(ValueError, match=r'matches none of our backbones.*'
                       r'layers\.0\.conv\.weight has shape \(16, 3, 3, 3\).*'
                       r'\(8, 3, 3, 3\)'):
        convert_mmpretrain_mobilenet_v3(sd)
    with pytest.raises(ValueError, match='arch must be one of'):
        convert_torchvision(small, arch='mobilenet_v3_medium')


def test_wrong_arch_tool_exits_with_the_message(tmp_path, monkeypatch):
    src, dst = tmp_path / 'small.pth', tmp_path / 'out.pth'
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), src)
    monkeypatch.setattr(sys, 'argv', ['torchvision_mobilenet.py', str(src), str(dst),
                                      '--arch', 'mobilenet_v3_large'])
    with pytest.raises(SystemExit, match=r"error: .*does not match arch "
                       r"'mobilenet_v3_large'.*pass --arch mobilenet_v3_small"):
        runpy.run_path(str(ROOT / 'tools/model_converters/torchvision_mobilenet.py'),
                       run_name='__main__')
    assert not dst.exists()


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


# -- the command line, end to end -------------------------------------------------------
TOOL_TEST = 'test_torchvision_tool_end_to_end'


@pytest.fixture(scope='module')
def torchvision_tool(tmp_path_factory):
    """Start ``tools/model_converters/torchvision_mobilenet.py SRC DST`` in a subprocess
    on a saved random mobilenet_v3_large; yields ``(reference, process, dst)``."""
    tmp = tmp_path_factory.mktemp('torchvision_tool')
    torch.manual_seed(2)
    ref = randomize(torchvision.models.mobilenet_v3_large(weights=None), seed=2)
    src, dst = tmp / 'src.pth', tmp / 'dst.pth'
    torch.save(ref.state_dict(), src)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / 'tools/model_converters/torchvision_mobilenet.py'),
         str(src), str(dst)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT)
    yield ref, proc, dst
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


@pytest.fixture(scope='module', autouse=True)
def _start_tool_early(request):
    """The tool's process spends seconds importing: without xdist, start it with this
    module's first test, so that it runs beside the others on the second core."""
    if ('PYTEST_XDIST_WORKER' not in os.environ
            and any(item.originalname == TOOL_TEST for item in request.session.items)):
        request.getfixturevalue('torchvision_tool')


def test_torchvision_tool_end_to_end(torchvision_tool):
    ref, proc, dst = torchvision_tool
    x = inputs()
    with torch.no_grad():
        ref_feats, ref_logits = ref.features(x), ref(x)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert 'torchvision mobilenet_v3_large' in stdout
    assert CFG['large'] in stdout

    ckpt = torch.load(dst, weights_only=True)
    assert ckpt['meta']['source_arch'] == 'mobilenet_v3_large'
    assert ckpt['meta']['config'] == CFG['large']
    check_classifier(str(dst), x, ref_feats, ref_logits, CFG['large'],
                     'tool: torchvision large')
    backbone = MobileNetV3('large', init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                                  prefix='backbone.'))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every tensor it loads
    try:
        backbone.init_weights()  # into float32: exact, the values were drawn in float32
    finally:
        logger.setLevel(level)
    backbone.eval().double()
    with torch.no_grad():
        assert_close(backbone(x)[-1], ref_feats, 'tool: torchvision backbone init_cfg')
