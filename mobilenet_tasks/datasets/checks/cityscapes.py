"""Cityscapes (mmseg's ``CityscapesDataset``): :func:`check_cityscapes` and its table
row, :class:`CityscapesChecker`."""
import os.path as osp
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from .base import DataCheck, DatasetChecker
from .errors import Fault
from .fileio import image_file_fault, write_replacing
from .layout import CITYSCAPES_IMG_SUFFIX, CITYSCAPES_SEG_MAP_SUFFIX, class_names, resolve
from .policy import DataCheckPolicy, decoded_indices

__all__ = ['CITYSCAPES_NUM_CLASSES', 'IGNORE_INDEX', 'check_cityscapes',
           'CityscapesChecker']

CITYSCAPES_NUM_CLASSES = 19
IGNORE_INDEX = 255


def check_cityscapes(img_dir: str, seg_dir: str,
                     img_suffix: str = '_leftImg8bit.png',
                     seg_suffix: str = '_gtFine_labelTrainIds.png',
                     num_classes: int = CITYSCAPES_NUM_CLASSES,
                     decode_images='auto', decode_labels='auto',
                     decode_limit: int = 200
                     ) -> Tuple[List[Fault], List[str], List[str]]:
    """Check the images and label maps of a Cityscapes split.

    Returns:
        tuple: the faults (``drop`` is ``('name', <city>/<name>)``, the line of mmseg's
        ``ann_file`` list), the names of the good images and notes for the log.
    """
    import cv2
    images = sorted(Path(img_dir).rglob(f'*{img_suffix}'))
    dec_img = decoded_indices(decode_images, len(images), decode_limit)
    dec_seg = decoded_indices(decode_labels, len(images), decode_limit)
    notes = [f'{img_dir}: decoded {len(dec)} of {len(images)} {what} (evenly spaced; the '
             f'others: header only; data_check.decode_{key}=True for all)'
             for dec, what, key in ((dec_img, 'images', 'images'),
                                    (dec_seg, 'label maps', 'labels'))
             if 0 < len(dec) < len(images)]
    faults, good = [], []
    for k, image in enumerate(images):
        name = str(image.relative_to(img_dir))[:-len(img_suffix)]
        label = osp.join(seg_dir, name + seg_suffix)
        drop = ('name', name)
        problem, array = image_file_fault(str(image), k in dec_img)
        if problem:
            faults.append(Fault(str(image), problem, drop))
            continue
        if not osp.exists(label):
            faults.append(Fault(label, f'the label map of {image.name} does not exist; '
                                'convert the polygons (tools/dataset_converters/'
                                'cityscapes.py) or remove the image', drop))
            continue
        problem, seg = image_file_fault(label, k in dec_seg, cv2.IMREAD_UNCHANGED)
        if problem is None and seg is not None:
            values = np.flatnonzero(np.bincount(seg.ravel(), minlength=256)) \
                if seg.dtype == np.uint8 else np.unique(seg)
            bad = values[(values >= num_classes) & (values != IGNORE_INDEX)]
            if seg.ndim != 2:
                problem = (f'a label map has one channel, this one {seg.shape[2]}: is '
                           'it a colour image?')
            elif bad.size:
                problem = (f'label values {bad.tolist()[:10]} are outside the '
                           f'{num_classes} classes (0..{num_classes - 1}, 255 = ignore):'
                           ' labelIds instead of labelTrainIds? Convert with '
                           'tools/dataset_converters/cityscapes.py')
            elif array is not None and array.shape[:2] != seg.shape:
                problem = (f'the label map is {seg.shape[1]}x{seg.shape[0]}, its image '
                           f'{array.shape[1]}x{array.shape[0]}')
        if problem:
            faults.append(Fault(label, problem, drop))
            continue
        good.append(name)
    return faults, good, notes


class CityscapesChecker(DatasetChecker):
    """The row of ``CityscapesDataset``: each ``*_leftImg8bit.png`` of the image folder
    and its label map. A dataset whose ``ann_file`` (a list file) chooses the images is
    not checked. Under ``'skip'`` the cleaned copy is such a list file (mmseg's
    ``ann_file``) of the good images."""

    def key(self, ds: dict, cfg=None) -> Optional[Tuple]:
        if ds.get('ann_file'):
            return None  # a list file chose the images: not ours to check
        return ('cityscapes', ) + _dirs(ds)

    def check(self, ds: dict, policy: DataCheckPolicy, cfg=None) -> DataCheck:
        classes = class_names(ds)
        faults, good, notes = check_cityscapes(
            *_dirs(ds), ds.get('img_suffix', CITYSCAPES_IMG_SUFFIX),
            ds.get('seg_map_suffix', CITYSCAPES_SEG_MAP_SUFFIX),
            len(classes) if classes else CITYSCAPES_NUM_CLASSES,
            policy.decode_images, policy.decode_labels, policy.decode_limit)
        return DataCheck(faults, notes, good)

    def clean(self, ds: dict, check: DataCheck, loader: str,
              out_dir: str) -> Tuple[str, str]:
        img_dir, _ = _dirs(ds)
        good = check.data
        list_file = self.out_file(out_dir, loader, img_dir) + '.txt'
        write_replacing(list_file, ''.join(f'{name}\n' for name in good))
        return list_file, (f'skipped {len(check.faults)} of '
                           f'{len(check.faults) + len(good)} images of {img_dir} '
                           f'(list of the others: {list_file}):')


def _dirs(ds: dict) -> Tuple[str, str]:
    """``(image dir, label dir)`` of a CityscapesDataset config, absolute."""
    root = ds.get('data_root') or ''
    prefix = ds.get('data_prefix') or {}
    return (resolve(root, prefix.get('img_path') or ''),
            resolve(root, prefix.get('seg_map_path') or ''))
