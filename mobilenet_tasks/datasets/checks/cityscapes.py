"""Cityscapes (mmseg's ``CityscapesDataset``): :func:`check_cityscapes` and its table
row, :class:`CityscapesChecker`."""
import os.path as osp
from pathlib import Path
from typing import List, Optional, Tuple

from .base import DataCheck, DatasetChecker
from .errors import Fault
from .fileio import write_replacing
from .layout import CITYSCAPES_IMG_SUFFIX, CITYSCAPES_SEG_MAP_SUFFIX, class_names, resolve
from .policy import DataCheckPolicy
from .segmentation import check_segmentation, head_class_faults

__all__ = ['CITYSCAPES_NUM_CLASSES', 'IGNORE_INDEX', 'CITYSCAPES_HINTS',
           'check_cityscapes', 'CityscapesChecker']

CITYSCAPES_NUM_CLASSES = 19
IGNORE_INDEX = 255


#: Cityscapes' own advice in the faults of :func:`check_cityscapes`.
CITYSCAPES_HINTS = dict(
    missing='convert the polygons (tools/dataset_converters/cityscapes.py) or remove '
    'the image',
    values='labelIds instead of labelTrainIds? Convert with '
    'tools/dataset_converters/cityscapes.py')


def check_cityscapes(img_dir: str, seg_dir: str,
                     img_suffix: str = '_leftImg8bit.png',
                     seg_suffix: str = '_gtFine_labelTrainIds.png',
                     num_classes: int = CITYSCAPES_NUM_CLASSES,
                     decode_images='auto', decode_labels='auto',
                     decode_limit: int = 200,
                     classes_from: str = 'CityscapesDataset.METAINFO'
                     ) -> Tuple[List[Fault], List[str], List[str]]:
    """Check the images and label maps of a Cityscapes split: each
    ``*<img_suffix>`` under ``img_dir`` and its label map, by the rules of any
    segmentation dataset (:func:`~.segmentation.check_segmentation`: values in
    ``0..num_classes-1`` or 255) with Cityscapes' advice.

    Returns:
        tuple: the faults (``drop`` is ``('name', <city>/<name>)``, the line of mmseg's
        ``ann_file`` list), the names of the good images and notes for the log.
    """
    images = sorted(Path(img_dir).rglob(f'*{img_suffix}'))
    names = [str(image.relative_to(img_dir))[:-len(img_suffix)] for image in images]
    samples = [(str(image), osp.join(seg_dir, name + seg_suffix))
               for image, name in zip(images, names)]
    faults, good, notes = check_segmentation(
        samples, num_classes, (IGNORE_INDEX, ), decode_images=decode_images,
        decode_labels=decode_labels, decode_limit=decode_limit, where=img_dir,
        classes_from=classes_from, drops=[('name', name) for name in names],
        hints=CITYSCAPES_HINTS)
    return faults, [names[k] for k in good], notes


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
        source = 'metainfo.classes' if classes else 'CityscapesDataset.METAINFO'
        if classes is None:
            from mmseg.datasets import CityscapesDataset
            classes = CityscapesDataset.METAINFO['classes']
        heads = head_class_faults(cfg, classes, source)
        faults, good, notes = check_cityscapes(
            *_dirs(ds), ds.get('img_suffix', CITYSCAPES_IMG_SUFFIX),
            ds.get('seg_map_suffix', CITYSCAPES_SEG_MAP_SUFFIX), len(classes),
            policy.decode_images, policy.decode_labels, policy.decode_limit, source)
        return DataCheck(heads + faults, notes, good)

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
