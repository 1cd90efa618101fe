"""SSDLite: mmdet's single-stage detector, with channel lists read from the backbone
and anchors for the input it sees."""
import copy
from typing import Optional

from mmdet.models.detectors import SingleStageDetector
from mmdet.models.detectors.base import BaseDetector
from torch import Tensor

from mobilenet_tasks.models.dense_heads.ssdlite_head import (FOLLOWING_GENERATOR,
                                                             check_anchors_fit)
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

    Anchors: ``loss`` and ``predict`` record the batch tensor's (H, W) as
    ``batch_input_shape`` in each data sample's metainfo where it is missing (mmdet's
    data preprocessor sets it; a hand-made batch may not), so that
    :class:`~mobilenet_tasks.models.dense_heads.SSDLiteHead` places the anchors for
    the image the network sees, whatever size the pipeline's ``Resize`` gives. A head
    that does not (mmdet's ``SSDHead``) is checked against that size before the first
    step: anchors made for another size stop it with a ValueError that says what to
    change, instead of a loss that rises without a word.

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

    def loss(self, batch_inputs: Tensor, batch_data_samples) -> dict:
        """mmdet's ``SingleStageDetector.loss``, with the input size checked."""
        x = self.extract_feat(batch_inputs)
        self._note_input_shape(batch_inputs, x, batch_data_samples)
        return self.bbox_head.loss(x, batch_data_samples)

    def predict(self, batch_inputs: Tensor, batch_data_samples, rescale: bool = True):
        """mmdet's ``SingleStageDetector.predict``, with the input size checked."""
        x = self.extract_feat(batch_inputs)
        self._note_input_shape(batch_inputs, x, batch_data_samples)
        results = self.bbox_head.predict(x, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _note_input_shape(self, batch_inputs: Tensor, feats, batch_data_samples):
        """Give each sample the batch's ``batch_input_shape``; check heads not ours."""
        shape = tuple(int(v) for v in batch_inputs.shape[-2:])
        for sample in batch_data_samples:
            given = sample.metainfo.get('batch_input_shape')
            if given is None:
                sample.set_metainfo(dict(batch_input_shape=shape))
            elif tuple(int(v) for v in given[:2]) != shape:
                raise ValueError(f"a data sample's batch_input_shape is "
                                 f'{tuple(given)}, but the batch tensor is '
                                 f'{shape[0]}x{shape[1]}: the anchors are placed for '
                                 'the batch_input_shape')
        if hasattr(self.bbox_head, 'priors_for'):
            return  # SSDLiteHead: anchors for the input, or its own check
        generator = getattr(self.bbox_head, 'prior_generator', None)
        if generator is not None:
            check_anchors_fit(
                generator, [f.shape[-2:] for f in feats], shape, 'SSDLite',
                "Use bbox_head=dict(type='mobilenet_tasks.SSDLiteHead') with "
                f'{FOLLOWING_GENERATOR}')
