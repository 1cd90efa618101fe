"""docs/backbones.md's table of layer index -> stride -> channels: the library function,
the tool, the doc (generated, between marker comments) and its FPN snippets, built into
mmdet's own RetinaNet config and run."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

from mobilenet_tasks.analysis.backbone_layers import (
    MARKDOWN_BEGIN, MARKDOWN_END, SNIPPET_VARIANTS, VARIANTS, Variant, all_layers,
    build, fpn_snippet, fpn_taps, generated_part, layers_markdown, measure,
    replace_generated, variant_layers)
from mobilenet_tasks.models.backbones import (MnasNet, MobileNetV1, MobileNetV2,
                                              MobileNetV3)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / 'docs/backbones.md'
TOOL = ROOT / 'tools/analysis_tools/backbone_layers.py'
RETINANET = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'


@pytest.fixture(scope='module')
def layers():
    return {layers.variant.name: layers for layers in all_layers()}


def tap(layers, index, expansion=False):
    [found] = [t for t in layers.taps if t.index == index and t.expansion == expansion]
    return found


def test_doc_is_the_generated_one(layers):
    """docs/backbones.md between its markers is what ``backbone_layers.py --markdown``
    prints."""
    text = DOC.read_text()
    assert text.count(MARKDOWN_BEGIN) == 1 and text.count(MARKDOWN_END) == 1
    assert generated_part(text) == layers_markdown(list(layers.values())), (
        'docs/backbones.md differs from `python tools/analysis_tools/backbone_layers.py '
        '--markdown`: run it with --update instead')
    assert list(layers) == [variant.name for variant in VARIANTS]


def test_known_layers(layers):
    """The papers' numbers: taps, strides with and without dilation, channels."""
    large = layers['MobileNetV3-Large']
    assert tap(large, 13, expansion=True).channels[1.0] == 672  # SSDLite's C4
    assert tap(large, 13, expansion=True).strides == {32: 16, 16: 16, 8: 8}
    assert tap(large, 16).name == 'final conv'
    assert tap(large, 16).channels == {0.35: 336, 0.5: 480, 0.75: 720, 1.0: 960}
    assert tap(large, 16).strides == {32: 32, 16: 16, 8: 8}
    assert tap(large, 0).strides == {32: 2, 16: 2, 8: 2}
    assert tap(layers['MobileNetV3-Large, reduced tail'], 16).channels[1.0] == 480
    assert tap(layers['MobileNetV3-Small, reduced tail'], 9, True).channels[1.0] == 288
    assert tap(layers['MobileNetV2'], 17).channels[1.0] == 320
    assert tap(layers['MobileNetV2'], 18).channels[0.35] == 1280  # kept at 1280
    assert tap(layers['MnasNet-A1'], 13, expansion=True).channels[1.0] == 672
    v1 = layers['MobileNetV1']
    assert not any(t.expansion for t in v1.taps)
    assert [t.index for t in v1.taps] == list(range(14))
    # the tables list the expansions of strided blocks only
    for each in layers.values():
        blocks = build(each.variant.type, **each.variant.kwargs).block_specs
        for t in each.taps:
            if t.expansion:
                assert blocks[t.index - 1].stride == 2, (each.variant.name, t.index)


@pytest.mark.parametrize('variant', VARIANTS, ids=lambda v: v.name)
def test_fpn_taps_are_the_last_layers_at_8_16_32(layers, variant):
    """Each variant and width, built with its row's ``out_indices``, returns strides
    8, 16, 32 with the row's ``in_channels``; no later layer has the same stride."""
    each = layers[variant.name]
    picked = fpn_taps(each)
    indices = tuple(t.index for t in picked)
    outs = [t for t in each.taps if not t.expansion]
    for t in picked:
        following = [o for o in outs if o.index == t.index + 1]
        assert not following or following[0].strides[32] > t.strides[32], t.name
    for width in variant.widths:
        backbone = build(variant.type, widen_factor=width, out_indices=indices,
                         **variant.kwargs).eval()
        with torch.no_grad():
            feats = backbone(torch.zeros(1, 3, 64, 64))
        assert [tuple(f.shape[1:]) for f in feats] == [
            (t.channels[width], 64 // s, 64 // s) for t, s in zip(picked, (8, 16, 32))]
        assert backbone.strides == (8, 16, 32)


def snippets():
    """The ```python blocks of the doc's generated part, one per SNIPPET_VARIANTS."""
    blocks = re.findall(r'^([^\n]+):\n\n```python\n(.*?)```$', generated_part(
        DOC.read_text()), re.M | re.S)
    assert [name for name, _ in blocks] == list(SNIPPET_VARIANTS)
    return blocks


@pytest.mark.parametrize('name,snippet', snippets(), ids=[n for n, _ in snippets()])
def test_snippet_builds_mmdet_retinanet(tmp_path, name, snippet):
    """The snippet pasted under ``_base_ = mmdet's retinanet_r50_fpn_1x_coco.py`` builds
    a RetinaNet on our backbone in mmdet's scope; it runs, P3-P7 at strides 8-128."""
    config = tmp_path / 'retinanet_ours.py'
    config.write_text(f'_base_ = {RETINANET!r}\n{snippet}')
    cfg = Config.fromfile(str(config))
    assert cfg.default_scope == 'mmdet'
    assert 'depth' not in cfg.model.backbone and 'init_cfg' not in cfg.model.backbone
    init_default_scope(cfg.default_scope)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    from mmdet.registry import MODELS
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    assert type(model).__name__ == 'RetinaNet'
    kind = dict(MobileNetV3=MobileNetV3, MobileNetV2=MobileNetV2, MnasNet=MnasNet,
                MobileNetV1=MobileNetV1)[cfg.model.backbone.type.split('.')[1]]
    assert isinstance(model.backbone, kind)
    assert list(model.backbone.out_channels) == list(cfg.model.neck.in_channels)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        feats = model.extract_feat(x)
        cls_scores, bbox_preds = model(x, mode='tensor')
    assert [tuple(f.shape[1:]) for f in feats] == [(256, 128 // s, 128 // s)
                                                   for s in (8, 16, 32, 64, 128)]
    anchors = 9  # 3 scales x 3 ratios
    assert [tuple(c.shape) for c in cls_scores] == [
        (1, 80 * anchors, 128 // s, 128 // s) for s in (8, 16, 32, 64, 128)]
    assert [tuple(b.shape[1:2]) for b in bbox_preds] == [(4 * anchors, )] * 5


def test_snippet_of_another_width_and_setting():
    variant = Variant('v2', 'MobileNetV2', dict(with_last_conv=False), (0.35, 1.0))
    snippet = fpn_snippet(variant_layers(variant), 0.35)
    assert 'with_last_conv=False' in snippet and 'widen_factor=0.35' in snippet
    assert 'out_indices=(6, 13, 17)' in snippet
    assert 'in_channels=[16, 32, 112]' in snippet


def test_measure_checks_what_the_backbone_reports(monkeypatch):
    rows = measure('MobileNetV3', arch='small', widen_factor=1.0)
    assert rows[-1] == dict(expansion=False, index=12, name='final conv', stride=32,
                            channels=576)
    monkeypatch.setattr(MobileNetV3, 'strides', property(lambda self: (4, ) * 99))
    with pytest.raises(RuntimeError, match='reports 16 channels at stride 4'):
        measure('MobileNetV3', arch='small')
    with pytest.raises(ValueError, match='type must be one of'):
        build('ResNet')


def test_markers():
    text = f'head\n{MARKDOWN_BEGIN}\nold\n{MARKDOWN_END}\ntail\n'
    new = replace_generated(text, 'new\n')
    assert new == f'head\n{MARKDOWN_BEGIN}\nnew\n{MARKDOWN_END}\ntail\n'
    assert generated_part(new) == 'new\n'
    with pytest.raises(ValueError, match='once each'):
        replace_generated(text + MARKDOWN_END, 'x')
    with pytest.raises(ValueError, match='before'):
        replace_generated(f'{MARKDOWN_END}\n{MARKDOWN_BEGIN}\n', 'x')


def load_tool():
    spec = importlib.util.spec_from_file_location('backbone_layers_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('argv,message', [
    (['--type', 'MobileNetV1', '--set', 'output_stride=16'],
     'the table sets these itself'),
    (['--arch', 'small'], 'need --type'),
    (['--type', 'MobileNetV1', '--markdown'], 'drop --type'),
    (['--size', '48'], 'multiple of 32')])
def test_tool_refuses(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, 'argv', [str(TOOL), *argv])
    with pytest.raises(SystemExit) as exit_info:
        load_tool().main()
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_tool_error_is_a_message(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', [str(TOOL), '--type', 'MobileNetV3',
                                      '--arch', 'medium'])
    with pytest.raises(SystemExit) as exit_info:
        load_tool().main()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith('error: arch must be one of')


def test_tool():
    """One backbone's table and snippet, in a fresh interpreter."""
    args = ['--type', 'MobileNetV3', '--arch', 'small', '--reduced-tail',
            '--widen-factor', '0.75', '1.0']
    proc = subprocess.run([sys.executable, str(TOOL), *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("MobileNetV3(arch='small', reduced_tail=True)\n")
    assert re.search(r'^expansion_indices +9 +block 9 exp\. +16 +16 +8 +240 +288$',
                     out, re.M), out
    assert re.search(r'^out_indices +8 +block 8 +16 +16 +8 +P4 +40 +48$', out, re.M)
    assert re.search(r'^out_indices +12 +final conv +32 +16 +8 +P5 +240 +288$', out,
                     re.M)
    assert "arch='small',\n        reduced_tail=True,\n        widen_factor=1.0," in out
    assert 'out_indices=(3, 8, 12)' in out and 'in_channels=[24, 48, 288]' in out


def test_tool_markdown_and_update(layers, monkeypatch, capsys, tmp_path):
    tool = load_tool()
    monkeypatch.setattr(tool, 'all_layers', lambda size: list(layers.values()))
    doc = tmp_path / 'backbones.md'
    doc.write_text(f'# how-to\n{MARKDOWN_BEGIN}\nstale\n{MARKDOWN_END}\n')
    monkeypatch.setattr(tool, 'DOC', doc)
    monkeypatch.setattr(sys, 'argv', [str(TOOL), '--markdown', '--update'])
    tool.main()
    printed = capsys.readouterr().out
    assert printed == layers_markdown(list(layers.values()))
    assert doc.read_text() == f'# how-to\n{MARKDOWN_BEGIN}\n{printed}{MARKDOWN_END}\n'
