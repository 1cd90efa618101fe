"""mmdet's SSD head, made able to predict."""
from mmdet.models.dense_heads import SSDHead

from mobilenet_tasks.registry import MODELS


class _SoftmaxScores:
    """Stands where ``BaseDenseHead`` looks for ``loss_cls``: plain softmax scores."""
    custom_cls_channels = False


@MODELS.register_module()
class SSDLiteHead(SSDHead):
    """mmdet's ``SSDHead`` (use ``use_depthwise=True`` for SSDLite) that can predict.

    mmdet 3.3.0's ``SSDHead`` never creates ``loss_cls`` (its loss is a hard-negative-
    mined cross entropy written inline), but ``BaseDenseHead._predict_by_feat_single``
    reads ``self.loss_cls.custom_cls_channels``: every SSD predict, val and test step
    raises ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``
    (mmdetection issues #11063, #11305, #11780; fix proposed in PR #11524, not
    released). This subclass sets the attribute (not a module: no weights, nothing in
    the state dict) and changes nothing else, so mmdet SSD checkpoints load unchanged.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_cls = _SoftmaxScores()
