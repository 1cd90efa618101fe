"""Quantization-aware training (QAT) graphs: the network the int8 runtimes execute,
with its quantization simulated, so that training can adapt the weights to it.

The graph is the one exported to every runtime (:class:`~.onnx_export.
SegmentorLogits`, :class:`~.detection_graph.DetectorRawOutputs`), captured by
``torch.export`` in training mode and prepared by torchao's ``prepare_qat_pt2e`` with
ExecuTorch's ``XNNPACKQuantizer``: the same annotations as the post-training int8
export (:mod:`.executorch_export`: which operators are quantized, ``keep_float``,
``hswish``), symmetric int8 weights per output channel, int8 activations with a zero
point, each simulated by a fake-quantize module. ``convert_pt2e`` of the trained graph
gives the quantized graph the ExecuTorch export lowers, as it does after calibration.

As Jacob et al. (2018, section 3) train:

- **BatchNorm folded for the forward pass**: ``prepare_qat_pt2e`` rewrites each
  Conv-BN pair so that the convolution runs with the folded, fake-quantized weight
  ``w * gamma / sqrt(running_var + eps)`` (the batch statistics still normalise the
  output while they are live, ``nniqat.ConvBn2d``'s method);
- **BN statistics frozen** after ``bn_freeze_iter`` iterations (:func:`set_graph_mode`:
  the batch norms then use, and no longer update, the running statistics, so the
  training forward pass is the deployed one);
- **observers frozen** after ``observer_freeze_iter`` (:func:`set_observers`): the
  activation ranges (moving averages of the observed min/max) stop moving, the rest of
  the fine-tune adapts the weights to them. Weight ranges are the current min/max of
  each output channel (``averaging_constant=1``: the paper's rule for weights;
  XNNPACK's QAT default averages them over iterations).

Why not call torchao's helpers as they are: ``prepare_qat_pt2e`` writes every folded
batch norm with ``eps=1e-5`` (its patterns' literal, "TODO: allow setting eps"), and
``move_exported_model_to_eval`` rewrites every batch norm with the defaults
(``eps=1e-5``, ``momentum=0.1``). MobileNetV3's batch norms use ``eps=1e-3`` (TF's,
ours and torchvision's), so the QAT graph silently computed another network: channels
with small variance are scaled up to 10x. :func:`restore_batch_norm_settings` puts
each batch norm's own ``eps`` and ``momentum`` back (measured: the un-fixed graph of
the demo segmentor, fake quantization off, is 34% of the logit scale off the float
model on a random input and gives the same label on 79% of the pixels; fixed, within
5e-7 of it), :func:`set_graph_mode` switches train / eval by the graph's own flags,
and :func:`convert_qat_graph` hands ``convert_pt2e`` (whose Conv-BN fold also takes
``eps`` from its pattern) the variance ``running_var + eps - 1e-5``. Un-fixed, the
demo detector ends its QAT fine-tune 1.1 mAP points lower (README). It may be a cause
of the PT2E QAT accuracy loss on torchvision's MobileNetV3 (pytorch/pytorch#114859,
whose model uses ``eps=1e-3``).
"""
import copy
from typing import Iterable, Optional, Sequence

import torch
import torch.nn as nn

from mobilenet_tasks.backends.base import require

#: aten operators of batch norm in a ``torch.export`` training graph; args
#: ``(input, weight, bias, running_mean, running_var, training, momentum, eps, ...)``.
BATCH_NORM_OPS = ('aten.batch_norm.default', 'aten._native_batch_norm_legit.default',
                  'aten._native_batch_norm_legit_no_training.default',
                  'aten.cudnn_batch_norm.default')
#: The batch norm ``eps`` torchao's QAT patterns are written with.
TORCHAO_BN_EPS = 1e-5
#: dropout operators, args ``(input, p, train)``.
DROPOUT_OPS = ('aten.dropout.default', 'aten.feature_dropout.default',
               'aten.dropout_.default', 'aten.feature_dropout_.default')


class QATError(RuntimeError):
    """A model the QAT graph cannot be made of, or a graph that does not match it."""


def qat_quantizer(keep_float: Sequence[str] = (), wrapper: Optional[nn.Module] = None,
                  weight_averaging: float = 1.0):
    """``XNNPACKQuantizer`` with the QAT variant of the post-training config: the same
    annotated operators and int8 formats, fake-quantize modules instead of observers
    (``FusedMovingAvgObsFakeQuantize``; activation ranges a moving average with
    ``averaging_constant`` 0.01, weight ranges ``weight_averaging``, 1: the current
    min/max). ``keep_float`` as :func:`~.executorch_export.float_module_names` (needs
    ``wrapper``)."""
    import dataclasses

    require('executorch', 'ExecuTorch', 'executorch')
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e import MovingAveragePerChannelMinMaxObserver
    from torchao.quantization.pt2e.fake_quantize import \
        FusedMovingAvgObsFakeQuantize

    from .executorch_export import float_module_names
    config = get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    weight = dataclasses.replace(
        config.weight,
        observer_or_fake_quant_ctr=FusedMovingAvgObsFakeQuantize.with_args(
            eps=2**-12, observer=MovingAveragePerChannelMinMaxObserver,
            averaging_constant=float(weight_averaging)))
    quantizer = XNNPACKQuantizer().set_global(dataclasses.replace(config,
                                                                  weight=weight))
    names = float_module_names(wrapper, keep_float) if keep_float else []
    if names:
        from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter
        inside = [get_module_name_filter(n) for n in names]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in inside))
    return quantizer


def _attr_path(node) -> Optional[str]:
    return node.target if getattr(node, 'op', None) == 'get_attr' else None


def restore_batch_norm_settings(graph: torch.fx.GraphModule, wrapper: nn.Module
                                ) -> set:
    """Give every batch norm of ``graph`` (prepared from ``wrapper``) the ``eps`` and
    ``momentum`` of its module in ``wrapper`` (see the module docstring); the module
    paths of the batch norms set.

    The batch norm of a node is the one whose ``running_var`` it reads (a ``get_attr``
    of ``<module path>.running_var``); the folded weight's ``running_var + eps``
    (an ``add`` of that buffer and a float) is set too.

    Raises:
        QATError: A batch norm node whose module is not found, or with a cumulative
            moving average (``momentum=None``, which the graph cannot express).
    """
    modules = dict(wrapper.named_modules())

    def module_of(var_node) -> nn.Module:
        path = _attr_path(var_node)
        if path is None or not path.endswith('running_var'):
            raise QATError(f'batch norm node reads {var_node} as its running variance, '
                           'not a buffer of the model')
        bn = modules.get(path.rsplit('.', 1)[0])
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise QATError(f'{path}: no batch norm module of the model owns it')
        if bn.momentum is None:
            raise QATError(f'{path.rsplit(".", 1)[0]}: momentum=None (a cumulative '
                           'average) cannot be trained in a QAT graph; set a momentum')
        return bn

    done = set()
    for node, kind in _batch_norm_sites(graph):
        if kind == 'batch_norm':
            bn = module_of(node.args[4])
            args = list(node.args)
            args[6], args[7] = float(bn.momentum), float(bn.eps)
            node.args = tuple(args)
            done.add(_attr_path(node.args[4]).rsplit('.', 1)[0])
        else:
            node.args = (node.args[0], float(module_of(node.args[0]).eps))
    graph.recompile()
    return done


def _batch_norm_sites(graph: torch.fx.GraphModule):
    """``(node, 'batch_norm')`` for each batch norm operator of ``graph``, ``(node,
    'eps')`` for each ``running_var + eps`` of a folded weight (an ``add`` of that
    buffer and a float)."""
    for node in graph.graph.nodes:
        if node.op != 'call_function':
            continue
        target = str(node.target)
        if target in BATCH_NORM_OPS:
            yield node, 'batch_norm'
        elif (target == 'aten.add.Tensor' and len(node.args) == 2
              and isinstance(node.args[1], float)
              and (_attr_path(node.args[0]) or '').endswith('running_var')):
            yield node, 'eps'


def set_graph_mode(graph: torch.fx.GraphModule, training: bool,
                   bn_frozen: bool = False) -> None:
    """Train or eval mode of an exported graph, by its operators' flags: batch norms
    use (and update) the batch statistics only when ``training and not bn_frozen``;
    dropout is active only when ``training``. ``graph.training`` is set alike."""
    batch_stats = bool(training and not bn_frozen)
    changed = False
    for node in graph.graph.nodes:
        if node.op != 'call_function':
            continue
        target = str(node.target)
        index = 5 if target in BATCH_NORM_OPS else 2 if target in DROPOUT_OPS else None
        if index is None:
            continue
        value = batch_stats if index == 5 else bool(training)
        if node.args[index] != value:
            args = list(node.args)
            args[index] = value
            node.args = tuple(args)
            changed = True
    if changed:
        graph.recompile()
    object.__setattr__(graph, 'training', bool(training))


def fake_quantizers(graph: nn.Module) -> Iterable[nn.Module]:
    from torchao.quantization.pt2e.fake_quantize import FakeQuantizeBase
    return [m for m in graph.modules() if isinstance(m, FakeQuantizeBase)]


def set_observers(graph: nn.Module, enabled: bool) -> None:
    """Let the fake-quantize modules update their ranges (or keep them)."""
    for fq in fake_quantizers(graph):
        fq.enable_observer(bool(enabled))


def set_fake_quant(graph: nn.Module, enabled: bool) -> None:
    """Simulate quantization (True) or run the graph in float (False)."""
    for fq in fake_quantizers(graph):
        fq.enable_fake_quant(bool(enabled))


def prepare_qat_graph(wrapper: nn.Module, example: torch.Tensor,
                      keep_float: Sequence[str] = (), dynamic: bool = True,
                      weight_averaging: float = 1.0) -> torch.fx.GraphModule:
    """``wrapper`` (the exported network, its weights already loaded) captured in
    training mode and prepared for QAT; batch, height and width dynamic unless
    ``dynamic=False``. The graph is returned in train mode, BN live, observers on.

    Raises:
        QATError: The capture or the batch norm settings failed (with the cause).
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e
    wrapper = wrapper.train()
    shapes = None
    if dynamic:
        auto = torch.export.Dim.AUTO
        shapes = ({0: auto, 2: auto, 3: auto}, )
    try:
        graph = torch.export.export(wrapper, (example, ), dynamic_shapes=shapes).module()
    except Exception as error:  # noqa: BLE001 (torch.export raises many kinds)
        raise QATError(f'torch.export of the {type(wrapper).__name__} graph in '
                       f'training mode failed: {type(error).__name__}: {error}') from error
    graph = prepare_qat_pt2e(graph, qat_quantizer(keep_float, wrapper, weight_averaging))
    restored = restore_batch_norm_settings(graph, wrapper)
    used = {n.target.rsplit('.', 1)[0] for n in graph.graph.nodes
            if n.op == 'get_attr' and str(n.target).endswith('running_var')}
    if used - restored:  # a batch norm operator this module does not know
        ops = sorted({str(n.target) for n in graph.graph.nodes
                      if 'norm' in str(n.target)})
        raise QATError(f'batch norms of the graph left with torchao\'s settings: '
                       f'{sorted(used - restored)[:3]} (operators {ops}); add the '
                       'operator to BATCH_NORM_OPS')
    _initialise_ranges(graph, example)
    set_graph_mode(graph, True)
    return graph


def _initialise_ranges(graph: torch.fx.GraphModule, example: torch.Tensor) -> None:
    """Observe the weights once (eval mode, so no batch norm statistic moves): the
    per-channel weight quantizers get their ranges and their shapes (those of a QAT
    checkpoint's, which then loads strictly); the activation quantizers are reset to
    "nothing observed", so the first training batch sets their ranges."""
    set_graph_mode(graph, False)
    set_observers(graph, True)
    with torch.no_grad():
        graph(example)
    for fq in fake_quantizers(graph):
        observer = fq.activation_post_process
        if fq.scale.numel() == 1 and observer.min_val.dim() == 0:  # per tensor
            observer.min_val.fill_(float('inf'))
            observer.max_val.fill_(float('-inf'))


def convert_qat_graph(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The int8 graph of a trained QAT graph (a copy: ``graph`` is unchanged), in eval
    mode: ``convert_pt2e``, the same step as after post-training calibration."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e
    graph = copy.deepcopy(graph)
    set_graph_mode(graph, False)
    set_observers(graph, False)
    _eps_into_running_var(graph)
    return convert_pt2e(graph)


def _eps_into_running_var(graph: torch.fx.GraphModule) -> None:
    """Write each batch norm as ``eps = 1e-5`` with ``running_var + eps - 1e-5`` as its
    variance: the same eval-mode function, in the form ``convert_pt2e`` folds right
    (its Conv-BN replacement takes the batch norm's ``eps`` from its pattern,
    ``1e-5``, not from the graph)."""
    done = set()
    for node, kind in _batch_norm_sites(graph):
        if kind == 'batch_norm':
            path, eps = _attr_path(node.args[4]), float(node.args[7])
            args = list(node.args)
            args[7] = TORCHAO_BN_EPS
            node.args = tuple(args)
            if path not in done and eps != TORCHAO_BN_EPS:
                graph.get_buffer(path).add_(eps - TORCHAO_BN_EPS)
            done.add(path)
        else:
            node.args = (node.args[0], TORCHAO_BN_EPS)
    graph.recompile()


__all__ = ['QATError', 'qat_quantizer', 'restore_batch_norm_settings',
           'set_graph_mode', 'set_observers', 'set_fake_quant', 'prepare_qat_graph',
           'convert_qat_graph', 'fake_quantizers', 'BATCH_NORM_OPS', 'DROPOUT_OPS']
