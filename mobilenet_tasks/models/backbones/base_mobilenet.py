"""The machinery the MobileNet family shares: blocks, width rounding, output stride,
feature taps, frozen stages.

Each architecture (``mobilenet_v3.py``, ``mobilenet_v2.py``, ``mnasnet.py``,
``mobilenet_v1.py``) is a table of blocks that reads like its paper, turned into a list of
:class:`BlockSpec` by the subclass; this module builds that list. Width, the reduced tail
and dilation are decided here, when blocks are built, never patched onto modules after.

Layers are numbered as in the papers: layer 0 is the stem convolution, layers 1..N are the
bottleneck blocks in order (so "block 13" of MobileNetV3-Large is layer 13), and layer N+1
is the final 1x1 convolution before pooling, where the architecture has one.
"""
import warnings
from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None,
                   min_ratio: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor`` (the TF MobileNet rule).

    Rounds to the nearest multiple, never below ``min_value`` (default ``divisor``) and
    never more than ``1 - min_ratio`` below ``value``. This is the only width-rounding
    rule in the project.

    Args:
        value (float): The unrounded channel count.
        divisor (int): The multiple to round to.
        min_value (int, optional): The smallest result. Defaults to ``divisor``.
        min_ratio (float): The result is at least ``min_ratio * value``.

    Returns:
        int: The rounded channel count.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


@dataclass(frozen=True)
class BlockSpec:
    """One built block: every number already scaled, halved and dilated.

    Args:
        in_channels (int): Input channels.
        expand_channels (int): Channels after the 1x1 expansion; equal to
            ``in_channels`` means the block has no expansion convolution.
        out_channels (int): Output channels.
        kernel_size (int): Depthwise kernel size.
        stride (int): Stride the architecture table gives the block.
        se_channels (int): Squeeze channels of squeeze-and-excitation; 0 for none.
        act (str): ``'relu'`` for a plain ReLU, or ``'act'`` for the backbone's
            ``act_cfg`` (h-swish in MobileNetV3, ReLU6 in V2, ...).
        residual (bool): Whether the block may add its input (it does only when the
            table stride is 1 and input and output channels agree).
        project_act (bool): Whether the 1x1 projection has an activation (MobileNetV1's
            depthwise-separable layer); the inverted residuals' projection is linear.
        dilation (int): Depthwise dilation, set by the output stride.
    """
    in_channels: int
    expand_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    se_channels: int = 0
    act: str = 'act'
    residual: bool = True
    project_act: bool = False
    dilation: int = 1

    @property
    def has_expansion(self) -> bool:
        return self.expand_channels != self.in_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation: global pooling, 1x1 conv, ReLU, 1x1 conv, gate.

    Args:
        channels (int): Channels gated.
        squeeze_channels (int): Channels of the bottleneck.
        gate (str): ``'hsigmoid'`` (MobileNetV3) or ``'sigmoid'`` (MnasNet).
    """

    def __init__(self, channels: int, squeeze_channels: int, gate: str = 'hsigmoid'):
        super().__init__()
        gates = {'hsigmoid': nn.Hardsigmoid, 'sigmoid': nn.Sigmoid}
        if gate not in gates:
            raise ValueError(f'SE gate must be one of {sorted(gates)}, got {gate!r}')
        self.conv1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gates[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.conv2(self.relu(self.conv1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """Expansion 1x1 conv, depthwise conv, optional SE, projection 1x1 conv, residual.

    Covers MobileNetV2/V3 and MnasNet blocks, and MobileNetV1's depthwise-separable layer
    (no expansion, no residual, activation after the projection).

    Args:
        spec (BlockSpec): The block.
        conv_cfg, norm_cfg (dict, optional): As mmcv's ConvModule takes them.
        act_cfg (dict): The activation used where ``spec.act == 'act'``.
        se_gate (str): The SE gate, ``'hsigmoid'`` or ``'sigmoid'``.
        with_cp (bool): Use gradient checkpointing in training.
    """

    def __init__(self, spec: BlockSpec, conv_cfg=None, norm_cfg=None, act_cfg=None,
                 se_gate: str = 'hsigmoid', with_cp: bool = False):
        super().__init__()
        self.spec = spec
        self.with_cp = with_cp
        self.use_residual = (spec.residual and spec.stride == 1
                             and spec.in_channels == spec.out_channels)
        act = dict(type='ReLU') if spec.act == 'relu' else act_cfg
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if spec.has_expansion:
            self.expand_conv = ConvModule(
                spec.in_channels, spec.expand_channels, 1, act_cfg=act, **common)
        else:
            self.expand_conv = None
        # A block that the output stride dilates keeps stride 1 (torchvision's rule).
        stride = 1 if spec.dilation > 1 else spec.stride
        self.depthwise_conv = ConvModule(
            spec.expand_channels,
            spec.expand_channels,
            spec.kernel_size,
            stride=stride,
            padding=(spec.kernel_size - 1) // 2 * spec.dilation,
            dilation=spec.dilation,
            groups=spec.expand_channels,
            act_cfg=act,
            **common)
        self.se = (SqueezeExcitation(spec.expand_channels, spec.se_channels, se_gate)
                   if spec.se_channels else None)
        self.project_conv = ConvModule(
            spec.expand_channels,
            spec.out_channels,
            1,
            act_cfg=act if spec.project_act else None,
            **common)

    def _forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        expanded = self.expand_conv(x) if self.expand_conv is not None else x
        out = self.depthwise_conv(expanded)
        if self.se is not None:
            out = self.se(out)
        out = self.project_conv(out)
        if self.use_residual:
            out = out + x
        return out, expanded

    def forward(self, x: torch.Tensor, return_expansion: bool = False):
        """Run the block; with ``return_expansion`` also return the expansion output."""
        if self.with_cp and x.requires_grad:
            out, expanded = cp.checkpoint(self._forward, x, use_reentrant=False)
        else:
            out, expanded = self._forward(x)
        return (out, expanded) if return_expansion else out


class BaseMobileNet(BaseModule):
    """A MobileNet-family backbone built from a list of :class:`BlockSpec`.

    Subclasses give the architecture: ``stem`` (channels of the stem at width 1),
    ``widen_range``, ``_block_specs`` (with width and the reduced tail applied),
    ``_last_channels`` and the default activation. This class adds the width check,
    the output stride, feature taps, freezing and checkpointing.

    Args:
        widen_factor (float): Width multiplier, within the class's ``widen_range``;
            channels are rounded with :func:`make_divisible`.
        out_indices (Sequence[int]): Layers whose outputs are returned: 0 is the stem,
            1..N the blocks, N+1 the final 1x1 conv (where there is one).
            Default: the last layer.
        expansion_indices (Sequence[int]): Blocks (1..N) whose expansion-layer output is
            returned as well (SSDLite's C4, timm's ``feature_location='expansion'``).
            Outputs come in network order; an expansion comes before its block's output.
        output_stride (int): 8, 16 or 32. Strides past it become dilation.
        with_last_conv (bool): Build the final 1x1 conv (layer N+1) where the
            architecture has one. False drops it: DeepLab's MobileNetV2 feature
            extractor ends at block 17 (320 channels), which is what the paper's
            Table 7 counts for V2; an unused layer would also stall DDP training.
        frozen_stages (int): Freeze layers 0..frozen_stages (parameters and BN
            statistics); -1 freezes nothing.
        norm_eval (bool): Keep every BN layer in eval mode while training.
        with_cp (bool): Gradient checkpointing of the blocks (saves memory, slower).
        conv_cfg, norm_cfg (dict): As mmcv's ConvModule takes them.
        act_cfg (dict, optional): The activation of the layers the architecture marks
            ``'act'``; None means the architecture's default.
        init_cfg (dict or list[dict], optional): Initialization config.
        pretrained (str, optional): Deprecated, as in mmdet/mmseg backbones: a
            checkpoint path, turned into ``init_cfg=dict(type='Pretrained', ...)``.
            Stock mmseg configs pass their ResNet checkpoint here through
            ``model.pretrained``: set ``model.pretrained=None`` when swapping in ours.
    """
    # Subclasses set these.
    stem: int = 32
    widen_range: Tuple[float, float] = (0.35, 1.4)
    default_act_cfg: dict = dict(type='ReLU')
    se_gate: str = 'hsigmoid'
    stem_act: str = 'act'
    last_act: str = 'act'

    def __init__(self,
                 widen_factor: float = 1.0,
                 out_indices: Optional[Sequence[int]] = None,
                 expansion_indices: Sequence[int] = (),
                 output_stride: int = 32,
                 with_last_conv: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', eps=0.001, momentum=0.01),
                 act_cfg: Optional[dict] = None,
                 init_cfg=None,
                 pretrained: Optional[str] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give init_cfg or pretrained, not both '
                                 f'(pretrained={pretrained!r})')
            warnings.warn('`pretrained` is deprecated: use init_cfg=dict('
                          f"type='Pretrained', checkpoint={pretrained!r})")
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_out'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg=init_cfg)
        low, high = self.widen_range
        if not low <= widen_factor <= high:
            raise ValueError(
                f'widen_factor must be in [{low}, {high}], got {widen_factor!r}')
        self.widen_factor = widen_factor
        if output_stride not in (8, 16, 32):
            raise ValueError(
                f'output_stride must be 8, 16 or 32, got {output_stride!r}')
        self.output_stride = output_stride
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        act_cfg = dict(self.default_act_cfg) if act_cfg is None else act_cfg
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)

        stem_channels = self._stem_channels()
        specs = self._dilate(self._block_specs())
        last_channels = (self._last_channels(specs[-1].out_channels)
                         if with_last_conv else 0)
        self.block_specs = tuple(specs)

        stem_act = dict(type='ReLU') if self.stem_act == 'relu' else act_cfg
        layers = [ConvModule(3, stem_channels, 3, stride=2, padding=1,
                             act_cfg=stem_act, **common)]
        for spec in specs:
            layers.append(InvertedResidual(spec, act_cfg=act_cfg, se_gate=self.se_gate,
                                           with_cp=with_cp, **common))
        if last_channels:
            last_act = dict(type='ReLU') if self.last_act == 'relu' else act_cfg
            layers.append(ConvModule(specs[-1].out_channels, last_channels, 1,
                                     act_cfg=last_act, **common))
        self.layers = nn.ModuleList(layers)
        self.num_blocks = len(specs)

        num_layers = len(self.layers)
        if out_indices is None:
            out_indices = (num_layers - 1, )
        out_indices = tuple(out_indices)
        expansion_indices = tuple(expansion_indices)
        for index in out_indices:
            if not isinstance(index, int) or not 0 <= index < num_layers:
                raise ValueError(
                    f'out_indices must be layers in range(0, {num_layers}) '
                    f'(0 = stem, 1..{self.num_blocks} = blocks'
                    + (f', {num_layers - 1} = final conv' if last_channels else '')
                    + f'), got {out_indices}')
        for index in expansion_indices:
            if (not isinstance(index, int) or not 1 <= index <= self.num_blocks
                    or not specs[index - 1].has_expansion):
                with_expansion = [
                    i + 1 for i, s in enumerate(specs) if s.has_expansion]
                raise ValueError(
                    f'expansion_indices must be blocks that have an expansion layer, '
                    f'{with_expansion}, got {expansion_indices}')
        if not out_indices and not expansion_indices:
            raise ValueError('out_indices and expansion_indices are both empty: '
                             'the backbone would return nothing')
        if not -1 <= frozen_stages < num_layers:
            raise ValueError(f'frozen_stages must be in range(-1, {num_layers}), '
                             f'got {frozen_stages}')
        self.out_indices = out_indices
        self.expansion_indices = expansion_indices
        self.frozen_stages = frozen_stages
        self.feature_info = self._make_feature_info(stem_channels, last_channels)
        self._freeze_stages()

    # -- architecture hooks -------------------------------------------------------------
    def _width(self, channels: float) -> int:
        """``channels`` times ``widen_factor``, rounded to a multiple of 8."""
        return make_divisible(channels * self.widen_factor, 8)

    def _stem_channels(self) -> int:
        return self._width(self.stem)

    def _block_specs(self) -> List[BlockSpec]:
        raise NotImplementedError

    def _last_channels(self, block_out_channels: int) -> int:
        """Channels of the final 1x1 conv, 0 for none."""
        raise NotImplementedError

    # -- building -------------------------------------------------------------------------
    def _dilate(self, specs: List[BlockSpec]) -> List[BlockSpec]:
        """Turn strides past ``output_stride`` into dilation (torchvision's convention:
        the block that would have strided already uses the new dilation)."""
        stride, dilation, out = 2, 1, []  # the stem has stride 2
        for spec in specs:
            if spec.stride > 1 and stride * spec.stride > self.output_stride:
                dilation *= spec.stride
            elif spec.stride > 1:
                stride *= spec.stride
            out.append(replace(spec, dilation=dilation))
        return out

    def _make_feature_info(self, stem_channels: int, last_channels: int) -> List[dict]:
        """Channels, stride and module name of every output, in output order."""
        info, stride = [], 2
        taps = {0: dict(num_chs=stem_channels, reduction=2, module='layers.0')}
        expansions = {}
        for i, spec in enumerate(self.block_specs, start=1):
            expansions[i] = dict(num_chs=spec.expand_channels, reduction=stride,
                                 module=f'layers.{i}.expand_conv')
            if spec.dilation == 1:
                stride *= spec.stride
            taps[i] = dict(num_chs=spec.out_channels, reduction=stride,
                           module=f'layers.{i}')
        if last_channels:
            taps[len(self.layers) - 1] = dict(
                num_chs=last_channels, reduction=stride,
                module=f'layers.{len(self.layers) - 1}')
        for index in sorted(set(self.out_indices) | set(self.expansion_indices)):
            if index in self.expansion_indices:
                info.append(expansions[index])
            if index in self.out_indices:
                info.append(taps[index])
        return info

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each output, in output order."""
        return tuple(f['num_chs'] for f in self.feature_info)

    @property
    def strides(self) -> Tuple[int, ...]:
        """Stride (reduction) of each output, in output order."""
        return tuple(f['reduction'] for f in self.feature_info)

    # -- running --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = []
        last = max(set(self.out_indices) | set(self.expansion_indices))
        for i, layer in enumerate(self.layers[:last + 1]):
            if i in self.expansion_indices:
                x, expanded = layer(x, return_expansion=True)
                outs.append(expanded)
            else:
                x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self):
        for layer in self.layers[:self.frozen_stages + 1]:
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        """Set train mode, keeping frozen layers (and, with norm_eval, BN) in eval.

        Returns self, as ``nn.Module.train`` does (mmpretrain 1.2.0's MobileNetV3 returns
        None, which breaks ``model = MODELS.build(cfg).eval()``).
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
