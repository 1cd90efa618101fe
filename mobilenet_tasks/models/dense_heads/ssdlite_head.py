"""mmdet's SSD head, made able to predict, with anchors for the input it sees."""
from typing import List, Optional, Sequence, Tuple

from mmdet.models.dense_heads import SSDHead
from mmdet.models.utils import select_single_mlvl
from mmengine.logging import print_log
from torch import Tensor

from mobilenet_tasks.registry import MODELS

FOLLOWING_GENERATOR = ("anchor_generator=dict("
                       "type='mobilenet_tasks.SSDLiteAnchorGenerator')")


class _SoftmaxScores:
    """Stands where ``BaseDenseHead`` looks for ``loss_cls``: plain softmax scores."""
    custom_cls_channels = False


@MODELS.register_module()
class SSDLiteHead(SSDHead):
    """mmdet's ``SSDHead`` (use ``use_depthwise=True`` for SSDLite) that can predict,
    and whose anchors are those of the input the network sees.

    Predicting: mmdet 3.3.0's ``SSDHead`` never creates ``loss_cls`` (its loss is a
    hard-negative-mined cross entropy written inline), but
    ``BaseDenseHead._predict_by_feat_single`` reads
    ``self.loss_cls.custom_cls_channels``: every SSD predict, val and test step raises
    ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'`` (mmdetection
    issues #11063, #11305, #11780; fix proposed in PR #11524, not released). This
    subclass sets the attribute (not a module: no weights, nothing in the state dict),
    so mmdet SSD checkpoints load unchanged.

    Anchors: the paper's default boxes are relative to the image (TF's and
    torchvision's generators recompute them from the image's shape), but mmdet asks a
    prior generator for feature-map sizes only, so a generator built for 320x320
    inputs gives, on a 128x128 batch, boxes that cover the top-left 40% of it: the
    loss rises and nothing says why. Here the loss (``get_anchors``) and the
    predictions (``predict_by_feat``) take the anchors of the batch's input size,
    ``batch_input_shape`` in the images' metainfo (else their common ``img_shape``),
    from a generator that follows the input (``follows_input``, ours:
    :class:`~mobilenet_tasks.models.task_modules.SSDLiteAnchorGenerator`). A
    generator fixed to one size (mmdet's ``SSDAnchorGenerator``) is checked instead:
    if its anchors do not fit the input, the first step stops with a ValueError that
    says what to change (:func:`check_anchors_fit`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_cls = _SoftmaxScores()
        self._reported_sizes = set()

    @property
    def follows_input(self) -> bool:
        """Whether the prior generator takes the input size (its anchors follow it)."""
        return bool(getattr(self.prior_generator, 'follows_input', False))

    def priors_for(self, featmap_sizes: Sequence, input_shape: Tuple[int, int],
                   dtype=None, device='cuda') -> List[Tensor]:
        """Anchors of every level for an ``input_shape`` (H, W) input, in its pixels.

        The one place the head asks for anchors (loss, predict, the ONNX export's
        constants), so all three see the same boxes for the same input.
        """
        input_shape = tuple(int(v) for v in input_shape)
        kwargs = dict(device=device) if dtype is None else dict(dtype=dtype,
                                                                device=device)
        if not self.follows_input:
            check_anchors_fit(self.prior_generator, featmap_sizes, input_shape,
                              'SSDLiteHead', f'Use {FOLLOWING_GENERATOR}')
            return self.prior_generator.grid_priors(featmap_sizes, **kwargs)
        configured = tuple(self.prior_generator.input_size)
        if input_shape != configured and input_shape not in self._reported_sizes:
            # not a fault (the boxes are relative), but it tells a user whose Resize
            # was not changed with the generator's input_size what the network sees
            self._reported_sizes.add(input_shape)
            print_log(f'SSDLiteHead: anchors for {_hw(input_shape)} inputs, the '
                      f'batch\'s size (the anchor generator\'s input_size is '
                      f'{_hw(configured)}; its boxes are relative to the image, so '
                      'they follow it)', logger='current')
        return self.prior_generator.grid_priors(featmap_sizes, input_size=input_shape,
                                                **kwargs)

    def get_anchors(self, featmap_sizes: List[tuple], batch_img_metas: List[dict],
                    device='cuda') -> Tuple[List[List[Tensor]], List[List[Tensor]]]:
        """mmdet's ``AnchorHead.get_anchors``, for the batch's input size."""
        input_shape = input_shape_of(batch_img_metas)
        priors = self.priors_for(featmap_sizes, input_shape, device=device)
        valid_flags = [
            self.prior_generator.valid_flags(
                featmap_sizes, meta.get('pad_shape', input_shape), device)
            for meta in batch_img_metas
        ]
        return [priors for _ in batch_img_metas], valid_flags

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg=None,
                        rescale: bool = False,
                        with_nms: bool = True):
        """mmdet's ``BaseDenseHead.predict_by_feat``, for the batch's input size."""
        if batch_img_metas is None:
            raise ValueError('SSDLiteHead.predict_by_feat needs batch_img_metas (the '
                             'anchors are placed for the input size they give)')
        num_levels = len(cls_scores)
        priors = self.priors_for([c.shape[-2:] for c in cls_scores],
                                 input_shape_of(batch_img_metas),
                                 dtype=cls_scores[0].dtype, device=cls_scores[0].device)
        results = []
        for i, meta in enumerate(batch_img_metas):
            factors = ([None] * num_levels if score_factors is None else
                       select_single_mlvl(score_factors, i, detach=True))
            results.append(self._predict_by_feat_single(
                cls_score_list=select_single_mlvl(cls_scores, i, detach=True),
                bbox_pred_list=select_single_mlvl(bbox_preds, i, detach=True),
                score_factor_list=factors, mlvl_priors=priors, img_meta=meta,
                cfg=cfg, rescale=rescale, with_nms=with_nms))
        return results


def input_shape_of(batch_img_metas: Sequence[dict]) -> Tuple[int, int]:
    """The (H, W) of the batch the network saw: the images' ``batch_input_shape``
    (mmdet's data preprocessor and our ``SSDLite`` set it), else their common
    ``img_shape`` (one image passed by hand, unpadded)."""
    for key in ('batch_input_shape', 'img_shape'):
        shapes = {tuple(int(v) for v in meta[key][:2])
                  for meta in batch_img_metas if key in meta}
        if shapes:
            if len(shapes) == 1 and all(key in meta for meta in batch_img_metas):
                return shapes.pop()
            break
    raise ValueError(
        'SSDLiteHead: cannot tell the size of the network\'s input from the images\' '
        'metainfo, and the anchors are placed for it: give every image '
        'batch_input_shape=(H, W), the size of the batch tensor (mmdet\'s '
        'DetDataPreprocessor sets it), or one common img_shape')


def check_anchors_fit(generator, featmap_sizes: Sequence, input_shape: Tuple[int, int],
                      owner: str, fix: str) -> None:
    """Stop, with what to change, when a prior generator fixed to one input size
    (not following the input) has anchors that do not fit an ``input_shape`` input.

    Fits: an ``input_size`` it declares equals ``input_shape``; and each level's grid
    of ``strides`` spans the input, ``(f - 1) * s < size <= f * s`` per side (true of
    mmdet's SSD300, SSD512 and SSDLite-320 configs at their sizes). A generator with
    neither (pixel anchors tiled by stride, e.g. RetinaNet's) fits any input.
    """
    h, w = input_shape
    name = type(generator).__name__
    made = getattr(generator, 'input_size', None)
    if made is not None:
        made = (made, made) if isinstance(made, int) else tuple(made)
        if tuple(made) != (h, w):
            raise ValueError(
                f'{owner}: the anchors of {name} are for {_hw(made)} inputs, but the '
                f'network sees {_hw(input_shape)} ones (batch_input_shape): they would '
                f'cover only part of each image, or spill over it. {fix}, whose '
                f'anchors follow the input size, or resize every image to '
                f'{_hw(made)} (the pipeline\'s Resize scale).')
    for level, (size, stride) in enumerate(zip(featmap_sizes,
                                               getattr(generator, 'strides', ()))):
        fh, fw = (int(v) for v in size)
        sw, sh = (stride, stride) if isinstance(stride, (int, float)) else stride
        if not ((fh - 1) * sh < h <= fh * sh and (fw - 1) * sw < w <= fw * sw):
            step = f'{sh:g}' if sh == sw else f'{sh:g}x{sw:g}'
            raise ValueError(
                f'{owner}: the anchors of {name} are fixed to one input size and do '
                f'not fit the {_hw(input_shape)} input (batch_input_shape): level '
                f'{level}\'s {fh}x{fw} feature map at stride {step} px spans '
                f'{fh * sh:g}x{fw * sw:g} px, so they would cover only part of each '
                f'image, or spill over it. {fix}, whose anchors follow the input '
                f'size, or set the generator\'s strides and sizes for '
                f'{_hw(input_shape)} inputs.')


def _hw(size) -> str:
    return f'{int(size[0])}x{int(size[1])}'
