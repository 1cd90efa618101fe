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
    assert out.optim_wrapper.optimizer.lr == pytest.approx(4e-3 * 0.02)
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


def test_a_qat_checkpoint_in_a_float_model_says_what_to_do():
    from mobilenet_tasks.utils.weights import check_state_dict
    model = nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match='a QAT checkpoint .* export it to its int8'):
        check_state_dict(model, {'qat_iter': torch.zeros(()), 'graph.weight': 1}, {},
                         'qat.pth', 'cfg.py')


# -- through the tools: a tiny SSDLite (V3-Small, 96x96) ------------------------------
QAT_ITERS = 4
TINY_SCHEDULE = """
train_cfg = dict(max_iters=40, val_interval=40)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=2, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
"""


def _tool(*args, cwd):
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def qat_run(tmp_path_factory):
    """A random float checkpoint of the tiny detector, QAT-trained for 4 iterations
    (BN frozen from 2, ranges from 3) with checkpoints at 2 and 4; then the same run
    resumed from its iteration-2 checkpoint in another work dir."""
    from mobilenet_tasks.datasets.demo_coco import make_demo_coco
    from mobilenet_tasks.testing import random_export_checkpoint, tiny_ssdlite_config
    tmp = tmp_path_factory.mktemp('qat')
    data = tmp / 'coco'
    make_demo_coco(data, num_train=8, num_val=4, image_size=96, seed=3)
    config = tmp / 'tiny.py'
    config.write_text(tiny_ssdlite_config(data, input_size=96, batch_size=2)
                      + TINY_SCHEDULE)
    float_ckpt, _, _, _ = random_export_checkpoint(str(config), tmp / 'float.pth')
    train = ROOT / 'tools/train.py'
    first, second = tmp / 'run', tmp / 'resumed'
    rc, log = _tool(train, config, '--qat', '--load-from', float_ckpt, '--qat-iters',
                    QAT_ITERS, '--work-dir', first, cwd=tmp)
    assert rc == 0, log[-3000:]
    second.mkdir()
    (second / 'iter_2.pth').write_bytes((first / 'iter_2.pth').read_bytes())
    # (no --load-from: the QAT checkpoint holds every weight)
    rc, resumed_log = _tool(train, config, '--qat', '--qat-iters', QAT_ITERS,
                            '--work-dir', second, '--resume', second / 'iter_2.pth',
                            cwd=tmp)
    assert rc == 0, resumed_log[-3000:]
    return dict(tmp=tmp, config=str(config), float_ckpt=float_ckpt, log=log,
                resumed_log=resumed_log, ckpt=str(first / f'iter_{QAT_ITERS}.pth'),
                resumed=str(second / f'iter_{QAT_ITERS}.pth'),
                dumped=str(first / 'tiny.py'))


def test_qat_trains_freezes_on_schedule_and_resumes_exactly(qat_run):
    log = qat_run['log']
    assert 'QAT: batch norm statistics frozen from iteration 2' in log
    assert 'QAT: quantization ranges frozen from iteration 3' in log
    assert 'coco/bbox_mAP' in log  # validated at the end, by the fake-quantized graph
    # the resumed run ran iterations 2 and 3: its schedule counted on from the
    # checkpoint (a count restarted at 0 would freeze nothing in two iterations)
    resumed = qat_run['resumed_log']
    assert 'QAT: batch norm statistics frozen from iteration 2' in resumed
    assert 'QAT: quantization ranges frozen from iteration 3' in resumed
    a = torch.load(qat_run['ckpt'], map_location='cpu', weights_only=False)
    b = torch.load(qat_run['resumed'], map_location='cpu', weights_only=False)
    assert int(a['state_dict']['qat_iter']) == QAT_ITERS
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    start = torch.load(qat_run['float_ckpt'], map_location='cpu')['state_dict']
    trained = a['state_dict']['graph.detector.backbone.layers.0.conv.weight']
    assert not torch.equal(trained, start['backbone.layers.0.conv.weight'])
    # the frozen ranges are the trained ones: observers off in the final state
    assert all(int(v) == 0 for k, v in a['state_dict'].items()
               if k.endswith('observer_enabled'))


def test_qat_checkpoint_exports_to_the_int8_files_of_ptq(qat_run):
    """The QAT checkpoint (with its own dumped config, or the float one) to an
    ExecuTorch program and an ONNX QDQ file: the PTQ kinds of files, int8, running
    through tools/test.py, close to the fake-quantized graph and far from float."""
    import onnx

    from mobilenet_tasks.backends import read_metadata
    from mobilenet_tasks.deployment import compare_with_backend, export_loaded, load_model
    from mobilenet_tasks.deployment.qat_onnx import export_qat_onnx
    tmp, config = qat_run['tmp'], qat_run['config']
    pte, onnx_file = tmp / 'qat.pte', tmp / 'qat.onnx'
    rc, out = _tool(ROOT / 'tools/deployment/export_executorch.py', qat_run['dumped'],
                    qat_run['ckpt'], pte, cwd=tmp)
    assert rc == 0, out[-3000:]
    assert 'quantization-aware training: 4 iterations' in out
    qat_model, cfg, meta = load_model(config, qat_run['ckpt'])  # the float config
    with pytest.raises(ValueError, match='--no-nms'):
        export_qat_onnx(qat_model, cfg, meta, config, onnx_file, (96, 96), nms=True)
    export_loaded(qat_model, cfg, meta, config, onnx_file, (96, 96), nms=False)
    ops = {n.op_type for n in onnx.load(str(onnx_file)).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear', 'Conv'} <= ops
    # the int8 files of PTQ hold these (test_executorch, test_quantize check them)
    for path in (pte, onnx_file):
        metadata = read_metadata(str(path))
        assert {'task', 'config', 'input_size', 'mean', 'std', 'bgr_to_rgb',
                'class_names', 'nms', 'num_levels', 'quantization'} <= set(metadata)
        assert metadata['quantization']['method'] == 'qat'
        assert metadata['quantization']['qat_iters'] == QAT_ITERS
    # the files compute the fake-quantized network (within a few steps), not float
    step = max(float(q.scale) for q in qat.fake_quantizers(qat_model.graph)
               if q.scale.numel() == 1)  # the coarsest activation step
    to_fake = [compare_with_backend(config, None, str(p), model=qat_model)
               for p in (pte, onnx_file)]
    qat.set_fake_quant(qat_model.graph, False)  # the same weights, in float
    to_float = [compare_with_backend(config, None, str(p), model=qat_model)
                for p in (pte, onnx_file)]
    for fake, flt in zip(to_fake, to_float):
        assert fake['max_abs_diff'] <= 4 * step, (fake, step)
        assert fake['max_abs_diff'] < 0.5 * flt['max_abs_diff'], (fake, flt)
    rc, out = _tool(ROOT / 'tools/test.py', config, pte, '--work-dir', tmp / 'test',
                    cwd=tmp)
    assert rc == 0, out[-3000:]
    metrics = json.loads((tmp / 'test' / 'test_metrics.json').read_text())['metrics']
    assert 0 <= metrics['coco/bbox_mAP'] <= 1
