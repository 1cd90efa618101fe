"""Quantization-aware training: the QAT graph (batch norm settings, train / eval modes,
frozen statistics and ranges), its conversion to int8, training and resuming through
``tools/train.py --qat``, and the int8 files a QAT checkpoint exports to.

The graph-level tests use a small Conv-BN network (fast); one module fixture trains a
tiny LR-ASPP for a few iterations through the tool, and the tool-level tests read it.
"""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

pytest.importorskip('executorch')

from mobilenet_tasks.deployment import qat  # noqa: E402
from mobilenet_tasks.deployment.qat_config import (config_for_checkpoint,  # noqa: E402
                                                   qat_config)

ROOT = Path(__file__).resolve().parents[2]


class _Block(nn.Module):
    """Conv-BN-h-swish, a squeeze-excitation gate, Conv-BN: MobileNetV3's pieces, with
    its batch norm eps (1e-3) and statistics far from the defaults."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3, momentum=0.01)
        self.act = nn.Hardswish()
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1),
                                nn.Hardsigmoid())
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4, eps=1e-3, momentum=0.01)
        self.drop = nn.Dropout2d(0.5)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                # small variances: where eps 1e-3 and 1e-5 give different networks
                bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) * 2e-3
                                     + 1e-4)
                bn.running_mean.uniform_(-0.1, 0.1, generator=gen)
            self.conv1.weight.mul_(0.05)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))
        x = x * self.se(x)
        return self.bn2(self.conv2(self.drop(x)))


def _prepared(block, example=None):
    example = torch.randn(2, 3, 16, 16) if example is None else example
    return qat.prepare_qat_graph(copy.deepcopy(block), example)


def _observe(graph, batches=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    qat.set_graph_mode(graph, True, bn_frozen=True)
    with torch.no_grad():
        for _ in range(batches):
            graph(torch.randn(2, 3, 16, 16, generator=gen))


def test_the_graph_without_fake_quantization_is_the_float_network():
    block = _Block().eval()
    graph = _prepared(block)
    qat.set_graph_mode(graph, False)
    qat.set_fake_quant(graph, False)
    x = torch.randn(1, 3, 16, 24)  # another size: batch, height, width are dynamic
    with torch.no_grad():
        ref, got = block(x), graph(x)
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()
    # torchao alone writes every folded batch norm with eps 1e-5: another network.
    # (If this starts failing, torchao keeps eps now and the workaround can go.)
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    raw = torch.export.export(copy.deepcopy(block).train(),
                              (torch.randn(2, 3, 16, 16), )).module()
    raw = prepare_qat_pt2e(raw, qat.qat_quantizer())
    qat.set_graph_mode(raw, False)
    qat.set_fake_quant(raw, False)
    x16 = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        wrong, ref16 = raw(x16), block(x16)
    assert (wrong - ref16).abs().max() > 0.1 * ref16.abs().max()


def test_modes_and_freezing_act_on_the_graph():
    block = _Block()
    graph = _prepared(block)
    mean = graph.get_buffer('bn1.running_mean')
    x = torch.randn(2, 3, 16, 16)
    start = mean.clone()
    with torch.no_grad():
        graph(x)  # train mode, BN live: the statistics move (momentum 0.01)
    moved = mean.clone()
    assert not torch.equal(moved, start)
    qat.set_graph_mode(graph, True, bn_frozen=True)
    with torch.no_grad():
        a, b = graph(x), graph(x)
    assert torch.equal(mean, moved)  # frozen: used, not updated
    assert not torch.equal(a, b)  # dropout still on in training
    qat.set_graph_mode(graph, False)
    fq = next(q for q in qat.fake_quantizers(graph) if q.scale.numel() == 1)  # input
    ranges = fq.activation_post_process.min_val.clone()
    qat.set_observers(graph, False)
    with torch.no_grad():
        c, d = graph(x * 10), graph(x * 10)
    assert torch.equal(c, d)  # eval: no dropout
    assert torch.equal(fq.activation_post_process.min_val, ranges)
    qat.set_observers(graph, True)
    with torch.no_grad():
        graph(x * 10)
    assert not torch.equal(fq.activation_post_process.min_val, ranges)


def test_converted_graph_computes_the_fake_quantized_network():
    """convert_pt2e's int8 graph against the fake-quantized one: within a few
    quantization steps of the output (rounding happens in another order: the folded
    weights are computed once, not per step), far from the float model's error."""
    block = _Block()
    graph = _prepared(block)
    _observe(graph)
    qat.set_graph_mode(graph, False)
    qat.set_observers(graph, False)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    converted = qat.convert_qat_graph(graph)  # (about 30 s: torchao's patterns)
    with torch.no_grad():
        fake = graph(x)
        int8 = converted(x)
        float_out = block.eval()(x)
    quantizers = qat.fake_quantizers(graph)
    out_step = max(float(q.scale) for q in quantizers if q.scale.numel() == 1)
    assert (int8 - fake).abs().max() <= 3 * out_step
    # the graph is unchanged by the conversion (a copy is converted)
    with torch.no_grad():
        assert torch.equal(graph(x), fake)
    # and the quantization is real: int8 is not the float model
    assert (int8 - float_out).abs().max() > 0.1 * out_step
    ops = {str(n.target) for n in converted.graph.nodes}
    assert 'quantized_decomposed.dequantize_per_channel.default' in ops


def test_qat_config_writes_the_fine_tune(tmp_path):
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / 'configs/ssdlite_v3_large_demo.py'))
    out = qat_config(cfg, 'float.pth')
    assert out.model.type == 'mobilenet_tasks.QATModel'
    assert out.model.model.type == cfg.model.type
    assert out.model.float_checkpoint == 'float.pth' and out.load_from is None
    assert out.train_cfg.max_iters == 80  # 10% of the demo's 800
    assert out.model.bn_freeze_iter == 40 and out.model.observer_freeze_iter == 60
    assert out.optim_wrapper.optimizer.lr == pytest.approx(4e-3 * 0.05)
    assert cfg.model.type != 'mobilenet_tasks.QATModel'  # the input is unchanged
    own = copy.deepcopy(cfg)
    own.qat = dict(iters=10, bn_freeze=-1, observer_freeze=1.0, keep_float=['se'])
    out = qat_config(own, 'float.pth')
    assert out.train_cfg.max_iters == 10 and out.model.bn_freeze_iter == -1
    assert out.model.observer_freeze_iter == 10 and out.model.keep_float == ['se']
    assert qat_config(own, 'f.pth', iters=20).train_cfg.max_iters == 20
    with pytest.raises(ValueError, match='--load-from'):
        qat_config(cfg, None)
    with pytest.raises(ValueError, match='already a QAT config'):
        qat_config(out, 'f.pth')
    with pytest.raises(ValueError, match='fraction'):
        qat_config(cfg, 'f.pth', bn_freeze=3)
    with pytest.raises(ValueError, match='unknown QAT settings'):
        qat_config(cfg, 'f.pth', freeze=3)
    # checkpoints pick their config: a float one keeps it, a QAT one gets the QAT model
    assert config_for_checkpoint(cfg, {'w': 0}, {}) is cfg
    got = config_for_checkpoint(cfg, {'qat_iter': 0}, {})
    assert got.model.type == 'mobilenet_tasks.QATModel'
    assert got.model.float_checkpoint is None
    with pytest.raises(ValueError, match='float checkpoint with a QAT config'):
        config_for_checkpoint(out, {'w': 0}, {})
