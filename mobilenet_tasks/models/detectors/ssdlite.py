"""SSDLite: mmdet's single-stage detector, with channel lists read from the backbone."""
import copy
from typing import Optional

from mmdet.models.detectors import SingleStageDetector
from mmdet.models.detectors.base import BaseDetector

from mobilenet_tasks.registry import MODELS


@MODELS.register_module()
class SSDLite(SingleStageDetector):
    """mmdet's ``SingleStageDetector`` that asks the backbone for its channels.

    The architecture is all mmdet's (``SSDNeck`` and an ``SSDHead`` with
    ``use_depthwise=True``); this class only fills the channel lists a config would
    otherwise repeat by hand, so a config that changes the backbone's width, reduced
    tail or taps changes nothing else:

    - ``neck.in_channels`` (if absent or None): ``backbone.out_channels``;
    - ``neck.out_channels`` (if absent or None): ``backbone.out_channels`` followed by
      ``neck.extra_channels`` (the extra SSDLite layers, e.g. ``(512, 256, 256, 128)``);
    - ``bbox_head.in_channels`` (if absent or None): the neck's ``out_channels``.

    Explicit values are kept and checked against the backbone.

    Args:
        backbone, neck, bbox_head, train_cfg, test_cfg, data_preprocessor, init_cfg:
            As mmdet's ``SingleStageDetector``.
    """

    def __init__(self, backbone: dict, neck: dict, bbox_head: dict,
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        BaseDetector.__init__(
            self, data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        channels = tuple(getattr(self.backbone, 'out_channels', ()))
        if not channels:
            raise ValueError(f'{type(self.backbone).__name__} does not report its '
                             '`out_channels`; give neck.in_channels, neck.out_channels '
                             'and bbox_head.in_channels explicitly')
        neck = copy.deepcopy(dict(neck))
        extra = tuple(neck.pop('extra_channels', ()))
        if neck.get('in_channels') is None:
            neck['in_channels'] = channels
        elif tuple(neck['in_channels']) != channels:
            raise ValueError(f'neck.in_channels={tuple(neck["in_channels"])} but the '
                             f'backbone emits {channels}: remove neck.in_channels to '
                             'take them from the backbone')
        if neck.get('out_channels') is None:
            neck['out_channels'] = channels + extra
        self.neck = MODELS.build(neck)
        bbox_head = copy.deepcopy(dict(bbox_head))
        if bbox_head.get('in_channels') is None:
            bbox_head['in_channels'] = tuple(neck['out_channels'])
        bbox_head.update(train_cfg=train_cfg, test_cfg=test_cfg)
        self.bbox_head = MODELS.build(bbox_head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
