"""Test-time preprocessing of a config, batched: what ``test_step`` does, without the
per-image mmcv pipeline where that is exactly equivalent.

A config's test pipeline is ``LoadImageFromFile -> Resize -> [LoadAnnotations] ->
Pack*Inputs`` for every SSDLite and segmentation config here; then the model's data
preprocessor converts BGR to RGB, normalises and pads. :class:`Preprocessor` does the
same on arrays: ``cv2.resize`` with the sizes and interpolation mmcv's ``Resize`` would
use (its own ``rescale_size`` for ``keep_ratio``), then the channel swap and
normalisation on a whole batch of equal-sized images at once, with the same float ops
as the data preprocessor, so the model sees bit-identical tensors
(``tests/test_apis/test_inferencer.py`` proves it against ``test_step``).

A pipeline with anything else (flips, padding transforms, test-time augmentation) runs
through mmcv's ``Compose`` instead, and a data preprocessor other than mmdet's
``DetDataPreprocessor`` or mmseg's ``SegDataPreProcessor`` without ``test_cfg`` is
called as the model would call it: slower, equally exact.
"""
import copy
from collections import OrderedDict
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.image import io as mmcv_io
from mmcv.image.geometric import cv2_interp_codes, rescale_size
from mmengine.dataset import Compose

# Transforms an inference on arrays replaces (loading) or does not need (annotations).
_LOADERS = ('LoadImageFromFile', 'LoadImageFromNDArray', 'InferencerLoader')
_ANNOTATIONS = ('LoadAnnotations', 'LoadDepthAnnotation', 'LoadPanopticAnnotations')
_PACKERS = ('PackDetInputs', 'PackSegInputs')
# The arguments of Resize the lean path reproduces (others: the mmcv pipeline runs).
_RESIZE_KEYS = {'type', 'scale', 'keep_ratio', 'interpolation', 'backend',
                'clip_object_border'}

# (indices into the chunk, batch tensor, data samples)
Batch = Tuple[List[int], torch.Tensor, list]


def _bare(transform_type) -> str:
    """``'mmdet.Resize'`` -> ``'Resize'``; a class -> its name."""
    name = transform_type if isinstance(transform_type, str) else transform_type.__name__
    return name.split('.')[-1]


def config_test_pipeline(cfg) -> list:
    """The config's test pipeline (``test_dataloader.dataset.pipeline``, else
    ``test_pipeline``), as a list of transform dicts."""
    pipeline = None
    loader = cfg.get('test_dataloader')
    if loader is not None and isinstance(loader.get('dataset'), dict):
        pipeline = loader['dataset'].get('pipeline')
    if pipeline is None:
        pipeline = cfg.get('test_pipeline')
    if not pipeline:
        raise ValueError('the config has no test pipeline (test_dataloader.dataset.'
                         'pipeline or test_pipeline): the inferencer needs one to know '
                         'how images are resized')
    return [dict(t) for t in copy.deepcopy(pipeline)]


class Preprocessor:
    """Arrays in, batches the model's ``predict`` takes out.

    Args:
        cfg (Config): The model's config (its test pipeline is read).
        model (nn.Module): The built model (its ``data_preprocessor`` is used).
        task (str): ``'detection'`` or ``'segmentation'``.

    Attributes:
        lean_resize (bool): Whether the test pipeline is done with ``cv2.resize``
            (else mmcv's ``Compose`` runs it image by image).
        lean_normalise (bool): Whether normalisation is done here on whole batches
            (else the model's data preprocessor is called).
    """

    def __init__(self, cfg, model, task: str):
        self.task = task
        self.data_preprocessor = model.data_preprocessor
        transforms = [t for t in config_test_pipeline(cfg)
                      if _bare(t['type']) not in _LOADERS + _ANNOTATIONS]
        self._resize = self._lean_resize(transforms)
        self.lean_resize = self._resize is not None
        self._pipeline = None if self.lean_resize else Compose(transforms)
        self.lean_normalise = self._can_normalise(self.data_preprocessor, task)
        if task == 'detection':
            from mmdet.structures import DetDataSample
            self._sample_type = DetDataSample
        else:
            from mmseg.structures import SegDataSample
            self._sample_type = SegDataSample

    # -- what the config asks for ---------------------------------------------------
    @staticmethod
    def _lean_resize(transforms: list) -> Optional[tuple]:
        """``(scale (w, h), keep_ratio, cv2 interpolation)`` if the pipeline is one plain
        ``Resize`` and a packer, else None."""
        body = [t for t in transforms if _bare(t['type']) not in _PACKERS]
        if len(body) != 1 or len(body) == len(transforms):
            return None
        resize = body[0]
        if _bare(resize['type']) != 'Resize' or set(resize) - _RESIZE_KEYS:
            return None
        scale = resize.get('scale')
        interpolation = resize.get('interpolation', 'bilinear')
        backend = resize.get('backend', 'cv2') or mmcv_io.imread_backend
        if scale is None or backend != 'cv2' or interpolation not in cv2_interp_codes:
            return None
        scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
        return scale, bool(resize.get('keep_ratio', False)), cv2_interp_codes[
            interpolation]

    @staticmethod
    def _can_normalise(preprocessor, task: str) -> bool:
        """Whether the data preprocessor does at test time exactly: optional BGR->RGB,
        float, ``(x - mean) / std``, padding to a size divisor (mmdet) or nothing
        (mmseg without ``test_cfg``)."""
        if task == 'detection':
            from mmdet.models.data_preprocessors import DetDataPreprocessor
            return type(preprocessor) is DetDataPreprocessor
        from mmseg.models.data_preprocessor import SegDataPreProcessor
        return (type(preprocessor) is SegDataPreProcessor
                and not getattr(preprocessor, 'test_cfg', None))

    # -- running ---------------------------------------------------------------------
    def __call__(self, images: Sequence[np.ndarray]) -> Iterator[Batch]:
        """Yield one batch for each group of images whose model input has one size
        (segmentation: and whose originals have one size).

        Args:
            images (Sequence[np.ndarray]): BGR ``uint8`` ``HxWx3`` arrays.

        Yields:
            tuple: ``(indices into images, input tensor (N, 3, H, W) on the model's
            device, data samples with the metainfo test_step would give)``.
        """
        if self.lean_resize:
            prepared = [self._resize_one(img) for img in images]
        else:
            prepared = [self._pipeline_one(img) for img in images]
        groups = OrderedDict()
        for i, (array, meta) in enumerate(prepared):
            # mmseg warns about a batch of several original sizes (its results are
            # right): its batches hold one original size
            key = array.shape if self.task == 'detection' else (array.shape,
                                                                meta['ori_shape'])
            groups.setdefault(key, []).append(i)
        for indices in groups.values():
            arrays = [prepared[i][0] for i in indices]
            metas = [prepared[i][1] for i in indices]
            yield (indices, ) + self._collate(arrays, metas)

    def _resize_one(self, image: np.ndarray) -> Tuple[np.ndarray, dict]:
        """mmdet's / mmcv's ``Resize``: an HxWx3 array and the metainfo it packs."""
        scale, keep_ratio, interpolation = self._resize
        h, w = image.shape[:2]
        new_w, new_h = rescale_size((w, h), scale) if keep_ratio else scale
        if (new_w, new_h) != (w, h):  # cv2.resize to the same size is a copy
            image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        return image, dict(ori_shape=(h, w), img_shape=(new_h, new_w),
                           scale_factor=(new_w / w, new_h / h))

    def _pipeline_one(self, image: np.ndarray) -> Tuple[np.ndarray, dict]:
        """The config's pipeline (without loading), as mmdet's ``InferencerLoader``
        starts it: the packed CHW tensor as HWC array, and the metainfo."""
        h, w = image.shape[:2]
        packed = self._pipeline(
            dict(img=image, img_path=None, img_shape=(h, w), ori_shape=(h, w)))
        array = packed['inputs'].permute(1, 2, 0).numpy()
        return array, dict(packed['data_samples'].metainfo)

    def _collate(self, arrays: List[np.ndarray], metas: List[dict]):
        device = self.data_preprocessor.device
        pre = self.data_preprocessor
        if not self.lean_normalise:
            samples = [self._sample_type(metainfo=meta) for meta in metas]
            tensors = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
                       for a in arrays]
            data = pre(dict(inputs=tensors, data_samples=samples), False)
            return data['inputs'], data['data_samples']
        batch = torch.from_numpy(np.stack(arrays)).to(device).permute(0, 3, 1, 2)
        swap = (pre._channel_conversion if self.task == 'detection' else
                pre.channel_conversion)
        if swap:
            batch = batch[:, [2, 1, 0]]
        batch = batch.float().contiguous()
        if pre._enable_normalize:
            batch = (batch - pre.mean) / pre.std
        h, w = batch.shape[-2:]
        if self.task == 'detection':  # DetDataPreprocessor: pad to the size divisor
            divisor = pre.pad_size_divisor
            pad_h, pad_w = -(-h // divisor) * divisor, -(-w // divisor) * divisor
            if (pad_h, pad_w) != (h, w):
                batch = F.pad(batch, (0, pad_w - w, 0, pad_h - h), value=pre.pad_value)
            for meta in metas:
                meta.update(batch_input_shape=(pad_h, pad_w), pad_shape=(pad_h, pad_w))
        samples = [self._sample_type(metainfo=meta) for meta in metas]
        return batch, samples
