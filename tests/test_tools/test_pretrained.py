"""Pretrained starts (issue 14): ``mobilenet_tasks://`` addresses in the fine-tuning
templates download the source library's weights through its own download code and
cache, convert them and cache the result. Here the "download" is a ``file://`` URL of a
file the test makes (random weights of the reference model), through the same code
(torch hub for torchvision and timm's URLs; timm's own file loading)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mobilenet_tasks.converters import (convert_timm, convert_torchvision,
                                        convert_torchvision_lraspp,
                                        convert_torchvision_ssdlite)
from mobilenet_tasks.converters.pretrained import (PretrainedError, addresses_in,
                                                   fetch_config_weights,
                                                   fetch_pretrained)
from mobilenet_tasks.datasets.custom_demo import TWO_CLASSES, make_two_class_coco
from mobilenet_tasks.testing import config_from_template, load_tool, randomize_
from mobilenet_tasks.utils.config import build_model
from mobilenet_tasks.utils.weights import load_weights

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = 'mobilenet_tasks://'


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """torch hub's cache and ours in the test's folder; the "server" folder the
    file:// URLs point into."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MOBILENET_TASKS_CACHE', str(tmp_path / 'ours'))
    server = tmp_path / 'server'
    server.mkdir()
    return dict(torch=tmp_path / 'torch_home' / 'hub' / 'checkpoints',
                ours=tmp_path / 'ours' / 'converted', server=server)


def _serve(model: torch.nn.Module, path: Path) -> str:
    """Random weights (BN statistics too) of ``model`` saved at ``path``: its URL."""
    randomize_(model, torch.Generator().manual_seed(0))
    torch.save(model.state_dict(), path)
    return path.as_uri()


def _same(model_sd: dict, expected: dict, prefix: str = ''):
    """The keys of ``expected`` (``prefix`` removed) whose tensor in ``model_sd``
    differs."""
    return [k for k, v in expected.items()
            if not torch.equal(model_sd[k[len(prefix):]], v)]


def test_backbone_start_downloads_converts_and_caches(caches, tmp_path):
    url = _serve(torchvision.models.mobilenet_v3_large(),
                 caches['server'] / 'mobilenet_v3_large-test.pth')
    address = f'{ADDRESS}torchvision/mobilenet_v3_large?url={url}'
    config = config_from_template('ssdlite_v3_large_custom.py', tmp_path / 'det.py',
                                  dict(backbone_weights=address, classes=('a', 'b')))
    cfg = Config.fromfile(config)
    assert addresses_in(cfg) == [address]
    model = build_model(cfg)
    model.init_weights()
    expected = convert_torchvision(torch.load(caches['server'] /
                                              'mobilenet_v3_large-test.pth'),
                                   with_head=False)
    backbone = model.backbone.state_dict()
    assert len(expected) == len(backbone)  # every tensor of the backbone
    assert _same(backbone, expected, 'backbone.') == []
    # torchvision's download went through torch hub's cache, ours holds the conversion
    assert [p.name for p in caches['torch'].iterdir()] == ['mobilenet_v3_large-test.pth']
    converted = list(caches['ours'].iterdir())
    assert len(converted) == 1 and converted[0].name.startswith(
        'torchvision-mobilenet_v3_large-')
    # cached: nothing is downloaded again
    (caches['server'] / 'mobilenet_v3_large-test.pth').unlink()
    for path in caches['torch'].iterdir():
        path.unlink()
    model2 = build_model(cfg)
    model2.init_weights()
    assert _same(model2.backbone.state_dict(), expected, 'backbone.') == []
    assert not any(caches['torch'].iterdir())


def test_timm_backbone_start(caches):
    import timm
    url = _serve(timm.create_model('mobilenetv3_small_100'),
                 caches['server'] / 'mobilenetv3_small_100.pth')
    state_dict, meta = load_weights(f'{ADDRESS}timm/mobilenetv3_small_100?url={url}')
    expected = convert_timm(torch.load(caches['server'] / 'mobilenetv3_small_100.pth'),
                            with_head=False)
    assert sorted(state_dict) == sorted(expected)
    assert _same(state_dict, expected) == []
    assert meta['converted_from'] == 'timm' and meta['downloaded_from'] == url


def test_eps_argument_folds_the_source_eps_for_the_target(caches):
    url = _serve(torchvision.models.mobilenet_v2(), caches['server'] / 'v2.pth')
    ours, _ = load_weights(f'{ADDRESS}torchvision/mobilenet_v2?url={url}')
    theirs, _ = load_weights(f'{ADDRESS}torchvision/mobilenet_v2?url={url}&eps=1e-5')
    var = next(k for k in ours if k.endswith('running_var'))  # the stem's BN
    weight = var.replace('running_var', 'weight')
    source = torch.load(caches['server'] / 'v2.pth')
    # the source's eps (1e-5): the BN weight is copied; our 1e-3: folded into it, so
    # that weight / sqrt(var + eps) is the source's
    assert torch.equal(theirs[weight], source['features.0.1.weight'])
    assert not torch.equal(ours[weight], source['features.0.1.weight'])
    assert torch.allclose(ours[weight] / torch.sqrt(ours[var] + 1e-3),
                          source['features.0.1.weight'] /
                          torch.sqrt(source['features.0.1.running_var'] + 1e-5),
                          rtol=1e-6)
    assert len(list(Path(os.environ['MOBILENET_TASKS_CACHE'], 'converted').iterdir())) == 2


def _detector_from_torchvision_ssdlite(caches, tmp_path):
    ssd = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None)
    url = _serve(ssd, caches['server'] / 'ssdlite.pth')
    address = f'{ADDRESS}torchvision/ssdlite320_mobilenet_v3_large?url={url}'
    # the template's comment: torchvision's architecture as the base, its detector as
    # load_from; two classes of our own
    config = config_from_template(
        'ssdlite_v3_large_custom.py', tmp_path / 'det_tv.py',
        dict(load_from=address, classes=('a', 'b'), input_size=320),
        edits=[("_base_ = '../ssdlite_v3_large_coco.py'",
                "_base_ = '../ssdlite_v3_large_reduced_torchvision_coco.py'")])
    expected = convert_torchvision_ssdlite(torch.load(caches['server'] / 'ssdlite.pth'))
    return Config.fromfile(config), address, expected


def test_detector_start_from_torchvision_coco_ssdlite(caches, tmp_path):
    cfg, address, expected = _detector_from_torchvision_ssdlite(caches, tmp_path)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # mmengine's Runner loads load_from so: not strictly (the classes differ)
    load_checkpoint(model, address, map_location='cpu', strict=False)
    state = model.state_dict()
    shapes = [k for k in expected if state[k].shape != expected[k].shape]
    # only the classifiers (91 COCO classes + background there, 2 + 1 here) differ
    assert shapes and all('cls_convs' in k for k in shapes), shapes
    assert _same(state, {k: v for k, v in expected.items() if k not in shapes}) == []
    assert all(torch.equal(state[k], before[k]) for k in shapes)
    # its own config loads it strictly, through the Inferencer as through a file
    from mobilenet_tasks.apis import Inferencer
    inferencer = Inferencer(
        str(ROOT / 'configs/ssdlite_v3_large_reduced_torchvision_coco.py'),
        weights=address)
    assert _same(inferencer.model.state_dict(), expected) == []


def test_segmenter_start_from_torchvision_lraspp(caches, tmp_path):
    lraspp = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21)
    url = _serve(lraspp, caches['server'] / 'lraspp.pth')
    address = f'{ADDRESS}torchvision/lraspp_mobilenet_v3_large?url={url}'
    # the template's comment: the base, load_from, reduced_tail = False, and the
    # pool_kernel line deleted
    config = config_from_template(
        'lraspp_v3_large_custom.py', tmp_path / 'seg_tv.py',
        dict(load_from=address, reduced_tail=False, crop_size=(128, 128)),
        edits=[("_base_ = '../lraspp_v3_large_cityscapes.py'",
                "_base_ = '../lraspp_v3_large_torchvision_voc.py'"),
               ("                     pool_kernel='crop', crop_size=crop_size, "
                "output_stride=16))", "                     ))")])
    cfg = Config.fromfile(config)
    model = build_model(cfg)
    load_checkpoint(model, address, map_location='cpu', strict=False)
    expected = convert_torchvision_lraspp(torch.load(caches['server'] / 'lraspp.pth'))
    state = model.state_dict()
    shapes = [k for k in expected if state[k].shape != expected[k].shape]
    assert sorted(shapes) == ['decode_head.conv_seg.bias', 'decode_head.conv_seg.weight',
                              'decode_head.low_classifier.bias',
                              'decode_head.low_classifier.weight']
    assert _same(state, {k: v for k, v in expected.items() if k not in shapes}) == []


@pytest.mark.parametrize('address, message', [
    ('mobilenet_tasks://torchvision/resnet50', "torchvision model 'resnet50' has no "
     'converter here; write mobilenet_tasks://torchvision/<mobilenet_v3_large|'),
    ('mobilenet_tasks://tv/mobilenet_v2', "unknown source 'tv'"),
    ('mobilenet_tasks://torchvision/mobilenet_v2.IMAGENET9', "torchvision has no "
     "weights 'IMAGENET9' for mobilenet_v2; it has IMAGENET1K_V1, IMAGENET1K_V2"),
    ('mobilenet_tasks://timm/mobilenetv3_large_999', "timm has no model "
     "'mobilenetv3_large_999' (some it has: mobilenetv3_large_075, "),
    ('mobilenet_tasks://timm/resnet50', "timm model 'resnet50' has no converter here"),
    ('mobilenet_tasks://torchvision/mobilenet_v2?ulr=x', 'unknown argument(s) ulr; '
     'the arguments are url, eps'),
    ('mobilenet_tasks://torchvision/mobilenet_v2?eps=small', "eps='small' is not a "
     'number'),
])
def test_bad_addresses_say_what_to_write(caches, address, message):
    with pytest.raises(PretrainedError) as error:
        fetch_pretrained(address)
    assert message in str(error.value)


def test_failed_download_says_what_to_do(caches):
    missing = (caches['server'] / 'mobilenet_v2-x.pth').as_uri()
    with pytest.raises(PretrainedError) as error:
        fetch_pretrained(f'{ADDRESS}torchvision/mobilenet_v2?url={missing}')
    assert f'cannot download {missing} (' in str(error.value)
    assert ('download mobilenet_v2-x.pth on another machine and write '
            'mobilenet_tasks://torchvision/mobilenet_v2?url=file:///path/to/'
            'mobilenet_v2-x.pth; or start from random weights') in str(error.value)
    assert not caches['ours'].exists()  # nothing half-written is cached


def test_train_tool_stops_before_the_run_on_a_bad_address(tmp_path):
    data = make_two_class_coco(tmp_path / 'shapes', num_train=4, num_val=2)
    config = config_from_template(
        'ssdlite_v3_large_custom.py', tmp_path / 'det.py',
        dict(data_root=f'{data}/', classes=TWO_CLASSES,
             backbone_weights=f'{ADDRESS}torchvision/mobilenet_v3_larg'))
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/train.py'), str(config),
                           '--work-dir', str(tmp_path / 'work')], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: mobilenet_tasks://torchvision/mobilenet_v3_larg: "
                           "torchvision model 'mobilenet_v3_larg' has no converter"), \
        proc.stderr[-2000:]


def test_prefetch_tool_and_config_fetch(caches, tmp_path, capsys):
    url = _serve(torchvision.models.mobilenet_v3_small(), caches['server'] / 's.pth')
    address = f'{ADDRESS}torchvision/mobilenet_v3_small?url={url}'
    load_tool('tools/model_converters/pretrained.py').main([address])
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    path = printed.split(' -> ')[1]
    assert printed.startswith(address) and Path(path).is_file()
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=dict(
        type='Pretrained', checkpoint=address, prefix='backbone.'))),
        load_from='work_dirs/x/iter_10.pth'))
    assert fetch_config_weights(cfg) == [path]
