"""Any mmseg ``BaseSegDataset`` (a user's own folder, ADE20K, VOC, ...; Cityscapes has
its own :mod:`.cityscapes`): :func:`check_segmentation`, :func:`read_label_map` and
their table row, :class:`SegmentationChecker`.

The dataset is built as mmseg builds it (no pipeline, nothing decoded) and lists its
samples itself, so what is checked is what the loader will read: the class's suffixes,
``reduce_zero_label`` and ``ignore_index`` defaults, a list ``ann_file``, ``indices``,
an overridden ``load_data_list``. Each label map's values must be, after mmseg's
``reduce_zero_label`` (0 -> 255, v -> v - 1) and ``label_map`` (config classes chosen
among the class's), in ``0..num_classes-1`` or ignored (255, the dataset's
``ignore_index``); ``num_classes`` is the number of the config's classes (the dataset's
``metainfo``, else its class's ``METAINFO``), which must equal the model's
``decode_head.num_classes`` when the config has one.
"""
import io
import os.path as osp
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from .base import DataCheck, DatasetChecker
from .errors import Fault
from .fileio import image_file_fault, write_replacing
from .layout import class_names, dataset_class, resolve
from .policy import DataCheckPolicy, decoded_indices

__all__ = ['MAX_VALUES', 'read_label_map', 'allowed_values', 'check_segmentation',
           'SegmentationChecker', 'head_class_faults', 'classes_source']

MAX_VALUES = 10  # bad label values listed in a fault
_PNG = b'\x89PNG\r\n\x1a\n'
# keys of a dataset config that do not change which files are read, or how
_NOT_DATA = ('pipeline', 'test_mode', 'serialize_data', 'lazy_init', 'max_refetch')


def read_label_map(path: str, decode: bool = True
                   ) -> Tuple[Optional[str], Optional[np.ndarray]]:
    """``(fault, label map)`` of a label map file as mmseg reads it (its size-1 axes
    squeezed away); fault None when it is readable.

    PNGs are decoded by OpenCV, unchanged (8 or 16 bits); a palette PNG (Pascal VOC's
    masks) by Pillow, which gives its indices, as mmseg's default backend does (OpenCV
    would give the colours). Without ``decode`` only the header is read.
    """
    problem, _ = image_file_fault(path, decode=False)
    if problem or not decode:
        return problem, None
    data = np.fromfile(path, dtype=np.uint8)
    head = data[:26].tobytes()
    try:
        if head.startswith(_PNG) and len(head) == 26 and head[25] == 3:
            from PIL import Image
            with Image.open(io.BytesIO(data.tobytes())) as image:
                label = np.asarray(image)
        else:
            import cv2
            label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except Exception:  # noqa: BLE001 - Pillow's errors on a truncated file vary
        label = None
    if label is None:
        return 'corrupt image: it cannot be decoded (truncated or not an image)', None
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[:, :, 0]
    return None, label


def allowed_values(num_classes: int, ignore: Sequence[int] = (255, ),
                   reduce_zero_label: bool = False,
                   label_map: Optional[Dict[int, int]] = None) -> Set[int]:
    """The values a label map may hold: those mmseg turns into ``0..num_classes-1``
    or an ``ignore`` value (``reduce_zero_label``: 0 -> 255, v -> v - 1, then
    ``label_map``). mmseg reads label maps as 8 bits: nothing above 255."""
    allowed = set()
    for value in range(256):
        new = value
        if reduce_zero_label:
            new = 255 if value in (0, 255) else value - 1
        if label_map:
            new = label_map.get(new, new)
        if 0 <= new < num_classes or new in ignore:
            allowed.add(value)
    return allowed


def _ranges(values: Sequence[int]) -> str:
    """``[0, 1, 2, 255]`` -> ``'0..2, 255'``."""
    parts, values = [], sorted(values)
    start = prev = None
    for value in values + [None]:
        if start is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f'{start}..{prev}')
        start = prev = value
    return ', '.join(parts) or 'none'


def _values(label: np.ndarray) -> List[int]:
    """The distinct values of a label map."""
    if label.dtype == np.uint8:
        return np.flatnonzero(np.bincount(label.ravel(), minlength=256)).tolist()
    return [v.item() for v in np.unique(label)]


def check_segmentation(samples: Sequence[Tuple[str, Optional[str]]], num_classes: int,
                       ignore: Sequence[int] = (255, ),
                       reduce_zero_label: bool = False,
                       label_map: Optional[Dict[int, int]] = None,
                       decode_images='auto', decode_labels='auto',
                       decode_limit: int = 200, where: str = 'the dataset',
                       classes_from: str = 'the classes', drops=None,
                       hints: Optional[Dict[str, str]] = None
                       ) -> Tuple[List[Fault], List[int], List[str]]:
    """Check the images and label maps of a segmentation dataset.

    Args:
        samples: ``(image path, label map path or None)`` of each sample.
        num_classes (int): The classes the label values must index.
        ignore, reduce_zero_label, label_map: As the dataset has them.
        decode_images, decode_labels, decode_limit: The ``data_check`` policy's.
        where (str): What the notes name (the image folder).
        classes_from (str): Where the classes come from, for the faults.
        drops (Sequence, optional): The ``Fault.drop`` of each sample (None: the
            sample cannot be left out).
        hints (dict, optional): A dataset's own advice: ``'missing'`` replaces what a
            missing label map's fault says to do, ``'values'`` replaces the hint of a
            fault of label values outside the classes.

    Returns:
        tuple: the faults (one per bad sample), the indices of the good samples and
        notes for the log.
    """
    hints = hints or {}
    allowed = allowed_values(num_classes, ignore, reduce_zero_label, label_map)
    dec_img = decoded_indices(decode_images, len(samples), decode_limit)
    dec_seg = decoded_indices(decode_labels, len(samples), decode_limit)
    notes = [f'{where}: decoded {len(dec)} of {len(samples)} {what} (evenly spaced; '
             f'the others: header only; data_check.decode_{key}=True for all)'
             for dec, what, key in ((dec_img, 'images', 'images'),
                                    (dec_seg, 'label maps', 'labels'))
             if 0 < len(dec) < len(samples)]
    of_classes = allowed_values(num_classes, (), reduce_zero_label, label_map)
    rule = (f'classes: {_ranges(sorted(of_classes))}, ignored: '
            f'{_ranges(sorted(allowed - of_classes))}'
            + ('; reduce_zero_label: 0 -> 255, v -> v-1' if reduce_zero_label else '')
            + ('; label_map: the class\'s ids -> the config\'s' if label_map else ''))
    faults, good = [], []
    for k, (image, label) in enumerate(samples):
        drop = drops[k] if drops is not None else None
        problem, array = image_file_fault(image, k in dec_img)
        if problem:
            faults.append(Fault(image, problem, drop))
            continue
        if label is None:
            good.append(k)
            continue
        if not osp.exists(label):
            todo = hints.get('missing', 'add it or remove the image')
            faults.append(Fault(label, f'the label map of {osp.basename(image)} does '
                                f'not exist; {todo}', drop))
            continue
        problem, seg = read_label_map(label, k in dec_seg)
        if problem is None and seg is not None:
            if seg.ndim != 2:
                problem = (f'a label map has one channel (a class index per pixel), '
                           f'this one {seg.shape[2]}: is it a colour mask?')
            else:
                values = _values(seg)
                bad = [v for v in values if v not in allowed]
                if bad:
                    listed = ', '.join(str(v) for v in bad[:MAX_VALUES]) + (
                        f' and {len(bad) - MAX_VALUES} more' if len(bad) > MAX_VALUES
                        else '')
                    problem = (f'label values {listed} are outside the {num_classes} '
                               f'classes of {classes_from} ({rule})')
                    if any(v > 255 for v in bad):
                        problem += '; mmseg reads label maps as 8 bits'
                    elif 'values' in hints:
                        problem += f'; {hints["values"]}'
                    elif (not reduce_zero_label and 0 not in values
                          and num_classes in bad):
                        problem += ('; labels counted from 1? reduce_zero_label=True '
                                    'maps 1..N to 0..N-1')
                elif array is not None and array.shape[:2] != seg.shape:
                    problem = (f'the label map is {seg.shape[1]}x{seg.shape[0]}, its '
                               f'image {array.shape[1]}x{array.shape[0]}')
        if problem:
            faults.append(Fault(label, problem, drop))
            continue
        good.append(k)
    return faults, good, notes


class SegmentationChecker(DatasetChecker):
    """The row of mmseg's ``BaseSegDataset`` and its subclasses (other than
    Cityscapes). Under ``'skip'`` the cleaned copy is a list file (mmseg's
    ``ann_file``) of the good samples, for a class that lists its samples as
    ``BaseSegDataset`` does; the samples of a class with its own ``load_data_list``
    cannot be left out."""

    def key(self, ds: dict, cfg=None) -> Optional[Tuple]:
        data = sorted((k, repr(v)) for k, v in ds.items() if k not in _NOT_DATA)
        return ('segmentation', repr(data))

    def check(self, ds: dict, policy: DataCheckPolicy, cfg=None) -> DataCheck:
        cfg = cfg if cfg is not None else {}
        cls = dataset_class(ds, cfg.get('default_scope'))
        if cls is None:
            return DataCheck([], [f'{ds.get("type")}: not checked (the class cannot '
                                  'be looked up)'])
        try:
            dataset = _build(cls, ds)
        except Exception as e:  # noqa: BLE001 - mmseg says it again when the run starts
            return DataCheck([], [f'{cls.__name__}: not checked (building it failed: '
                                  f'{type(e).__name__}: {e})'])
        classes = class_names(ds, cls)
        source = classes_source(ds, cls)
        heads = _head_classes(cfg)
        faults = head_class_faults(cfg, classes, source)
        if classes is not None:
            num_classes = len(classes)
        elif heads:
            num_classes, source = heads[0][1], heads[0][0]
        else:
            return DataCheck([], [f'{cls.__name__}: label values not checked (no '
                                  'classes in metainfo, METAINFO or the model)'])
        samples, drops, img_dir = _samples(dataset)
        bad, good, notes = check_segmentation(
            samples, num_classes, sorted({255, int(dataset.ignore_index)}),
            bool(dataset.reduce_zero_label), dataset.label_map, policy.decode_images,
            policy.decode_labels, policy.decode_limit, img_dir, source, drops)
        names = [drops[k][1] for k in good] if all(drops) else None
        return DataCheck(faults + bad, notes, (img_dir, len(samples), names))

    def clean(self, ds: dict, check: DataCheck, loader: str,
              out_dir: str) -> Tuple[str, str]:
        img_dir, total, names = check.data
        list_file = self.out_file(out_dir, loader, img_dir) + '.txt'
        write_replacing(list_file, ''.join(f'{name}\n' for name in names))
        return list_file, (f'skipped {len(check.faults)} of {total} images of '
                           f'{img_dir} (list of the others: {list_file}):')

    def point(self, cfg, ds: dict, cleaned: str) -> None:
        ds['ann_file'] = cleaned
        ds.pop('indices', None)  # the list holds the chosen samples only


def _build(cls, ds: dict):
    """The dataset, its samples listed (``full_init``) but nothing read."""
    kwargs = {k: v for k, v in ds.items() if k not in ('type', ) + _NOT_DATA}
    dataset = cls(**kwargs, pipeline=[], lazy_init=True, serialize_data=False)
    dataset.full_init()
    return dataset


def _samples(dataset) -> Tuple[List[Tuple[str, Optional[str]]], list, str]:
    """``(image, label map)`` of each sample, the ``Fault.drop`` of each (the name
    of a list ``ann_file``, or None where the class lists its samples its own way)
    and the image folder."""
    from mmseg.datasets import BaseSegDataset
    img_dir = resolve('', dataset.data_prefix.get('img_path') or '')
    listed = type(dataset).load_data_list is BaseSegDataset.load_data_list
    suffix = getattr(dataset, 'img_suffix', '')
    samples, drops = [], []
    for info in dataset.data_list:
        image = resolve('', info['img_path'])
        seg = info.get('seg_map_path')
        samples.append((image, resolve('', seg) if seg else None))
        name = osp.relpath(image, img_dir)
        ok = listed and suffix and name.endswith(suffix) and not name.startswith('..')
        drops.append(('name', name[:-len(suffix)]) if ok else None)
    return samples, drops, img_dir


def classes_source(ds: dict, cls) -> str:
    """Where a dataset config's classes come from, for messages."""
    return ('metainfo.classes' if (ds.get('metainfo') or {}).get('classes') is not None
            else f'{cls.__name__}.METAINFO')


def head_class_faults(cfg, classes: Optional[Sequence[str]],
                      source: str) -> List[Fault]:
    """A fault for each decode head of the config whose ``num_classes`` is not the
    number of the dataset's ``classes`` (the model would predict other classes than
    the labels name: a crash on a label value, or classes never trained)."""
    if classes is None:
        return []
    return [Fault(key, f'{n}, but the dataset has {len(classes)} classes ({source}: '
                  f'{_short(classes)}): make them agree (num_classes={len(classes)}, '
                  "or the model's classes in the dataset's metainfo)")
            for key, n in _head_classes(cfg or {}) if n != len(classes)]


def _head_classes(cfg) -> List[Tuple[str, int]]:
    """``(key, num_classes)`` of the config's decode head(s)."""
    model, key = cfg.get('model'), 'model'
    while isinstance(model, dict) and 'decode_head' not in model and isinstance(
            model.get('model'), dict):  # a wrapper of the model (BackendModel)
        model, key = model['model'], key + '.model'
    heads = model.get('decode_head') if isinstance(model, dict) else None
    if isinstance(heads, dict):
        return ([(f'{key}.decode_head.num_classes', heads['num_classes'])]
                if isinstance(heads.get('num_classes'), int) else [])
    return [(f'{key}.decode_head[{i}].num_classes', head['num_classes'])
            for i, head in enumerate(heads or [])  # a cascade's heads
            if isinstance(head, dict) and isinstance(head.get('num_classes'), int)]


def _short(classes: Sequence[str], limit: int = 5) -> str:
    text = ', '.join(str(c) for c in classes[:limit])
    return text + (f', ... ({len(classes)})' if len(classes) > limit else '')
