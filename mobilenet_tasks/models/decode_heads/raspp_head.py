"""The MobileNetV2 paper's reduced ASPP (R-ASPP) baseline, as an mmseg decode head."""
from mmcv.cnn import ConvModule
from mmengine.registry import DefaultScope
from mmseg.models.decode_heads.aspp_head import ASPPHead

from mobilenet_tasks.registry import MODELS


@MODELS.register_module()
class RASPPHead(ASPPHead):
    """R-ASPP of "MobileNetV2" (Sandler et al., 2018), section 6.3.

    The paper's reduced ASPP keeps two of DeepLabv3's ASPP branches: a 1x1 conv + BN +
    ReLU and image pooling (global average pool + 1x1 conv + BN + ReLU, upsampled);
    they are concatenated and projected by a 1x1 conv + BN + ReLU to ``channels``
    (DeepLab's ``concat_projection``), then classified by ``cls_seg``.

    Why a subclass: mmseg's ``ASPPHead(dilations=(1,))`` gives the two branches exactly
    (same module names, so its checkpoints' branch weights load here), but its
    ``bottleneck`` is a 3x3 conv, not the paper's 1x1 projection, so mmseg cannot express
    R-ASPP by config alone. This class fixes ``dilations=(1,)`` and replaces only the
    bottleneck by a 1x1 ``ConvModule``; everything else is ``ASPPHead``'s.

    Args:
        in_channels (int): Channels of the input feature (e.g. MobileNetV3-Large's
            last layer, 960, or 480 with ``reduced_tail=True``).
        channels (int): Channels of the branches and the projection. Default: 256.
        norm_cfg (dict): Norm of all three ConvModules. Default: BN.
        **kwargs: See mmseg's ``BaseDecodeHead`` (``num_classes``, ``in_index``
            (default -1), ``dropout_ratio``, ``loss_decode``, ...). ``dilations`` may
            not be given. ``loss_decode`` is built in mmseg's scope (see
            :class:`LRASPPHead`).
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 256,
                 *,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 **kwargs):
        if 'dilations' in kwargs:
            raise ValueError('RASPPHead has a single 1x1 branch (dilations=(1,)); '
                             'use mmseg ASPPHead for other dilations, got '
                             f"dilations={kwargs['dilations']!r}")
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(
                f'in_channels must be a positive int, got {in_channels!r}')
        if not isinstance(channels, int) or channels <= 0:
            raise ValueError(f'channels must be a positive int, got {channels!r}')
        # As in our LRASPPHead: build ``loss_decode`` in mmseg's scope, where the bare
        # 'CrossEntropyLoss' is mmseg's, whatever the default scope is.
        with DefaultScope.overwrite_default_scope('mmseg'):
            super().__init__(
                dilations=(1, ),
                in_channels=in_channels,
                channels=channels,
                norm_cfg=norm_cfg,
                **kwargs)
        self.bottleneck = ConvModule(
            2 * self.channels,
            self.channels,
            1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)
