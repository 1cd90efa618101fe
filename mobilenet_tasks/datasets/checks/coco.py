"""COCO detection json (mmdet's ``CocoDataset`` and other datasets whose ``ann_file``
is a ``.json``): :func:`check_coco`, :func:`clean_coco` and their table row,
:class:`CocoChecker`."""
import json
import math
import os.path as osp
from collections import Counter
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .base import DatasetChecker
from .errors import Fault
from .fileio import image_file_fault, write_replacing
from .layout import class_names, evaluator_metrics, resolve
from .policy import DataCheckPolicy, decoded_indices

__all__ = ['BOX_SLACK', 'CocoCheck', 'check_coco', 'clean_coco', 'CocoChecker']

BOX_SLACK = 1.0  # pixels a box may stick out of its image


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


class CocoCheck(NamedTuple):
    faults: List[Fault]
    #: Not faults: sentences for the log.
    notes: List[str]
    data: Optional[dict]  # the parsed json (None when it is unusable)


def _load_json(ann_file: str) -> Tuple[Optional[dict], Optional[Fault]]:
    try:
        with open(ann_file, 'rb') as f:
            raw = f.read()
    except OSError as e:
        return None, Fault(ann_file, f'cannot read the file ({e.strerror or e})')
    if not raw.strip():
        return None, Fault(ann_file, 'the annotation file is empty')
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, nesting
        where = (f' at line {e.lineno} column {e.colno} (byte {e.pos} of {len(raw)})'
                 if isinstance(e, json.JSONDecodeError) else '')
        truncated = ' - the file looks truncated' if not raw.rstrip().endswith(
            (b'}', b']')) else ''
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e)[:200]
        return None, Fault(ann_file, f'invalid JSON{where}: {msg}{truncated}; '
                           're-download or regenerate it')
    if not isinstance(data, dict):
        return None, Fault(ann_file, f'a COCO annotation file holds a JSON object, '
                           f'this one a {type(data).__name__}')
    bad = [key for key in ('images', 'annotations', 'categories')
           if not isinstance(data.get(key), list)]
    if bad:
        return None, Fault(ann_file, f'not a COCO detection file: {", ".join(bad)} '
                           'missing or not a list')
    return data, None


def check_coco(ann_file: str, img_dir: str, classes: Optional[Sequence[str]] = None,
               decode='auto', decode_limit: int = 200,
               filter_empty_gt: bool = False) -> CocoCheck:
    """Check a COCO detection json and its image files.

    Args:
        ann_file (str): The json.
        img_dir (str): The folder the ``file_name`` of its images are relative to.
        classes (Sequence[str], optional): The config's ``metainfo.classes``.
        decode (bool or 'auto'): Decode every image (else check the header).
        decode_limit (int): For ``'auto'``: decode when there are at most this many.
        filter_empty_gt (bool): Whether the dataset drops images without boxes (only
            changes what the notes say).

    Returns:
        CocoCheck: The faults (each names the file, the image or annotation and what is
        wrong), notes for the log and the parsed json.
    """
    data, fault = _load_json(ann_file)
    if fault:
        return CocoCheck([fault], [], None)
    faults: List[Fault] = []
    notes: List[str] = []
    categories = {}
    for cat in data['categories']:
        if not isinstance(cat, dict) or not _int(cat.get('id')):
            faults.append(Fault(ann_file, f'category {str(cat)[:80]} has no integer id'))
        elif cat['id'] in categories:
            faults.append(Fault(ann_file, f'duplicate category id {cat["id"]}'))
        else:
            categories[cat['id']] = str(cat.get('name'))
    if classes is not None:
        names = set(categories.values())
        absent = [c for c in classes if c not in names]
        if absent:  # cannot be skipped: the labels would be shifted
            faults.append(Fault(
                ann_file, f'the config\'s classes {absent} are not among the json\'s '
                f'category names {sorted(names)[:30]}; fix metainfo.classes'))
    wanted = {i for i, n in categories.items() if classes is None or n in classes}
    images: Dict[object, dict] = {}
    for img in data['images']:
        if not isinstance(img, dict) or not _int(img.get('id')):
            faults.append(Fault(ann_file, f'image entry {str(img)[:80]} has no integer '
                                'id'))
            continue
        problem = None
        if not isinstance(img.get('file_name'), str) or not img['file_name']:
            problem = 'no file_name'
        elif not (_number(img.get('width')) and _number(img.get('height'))
                  and img['width'] > 0 and img['height'] > 0):
            problem = (f'width/height {img.get("width")!r}x{img.get("height")!r} are '
                       'not positive numbers')
        elif img['id'] in images:
            problem = 'duplicate image id'
        if problem:
            faults.append(Fault(ann_file, f'image id {img["id"]!r}: {problem}',
                                ('image', img['id'])))
            continue
        images[img['id']] = img
    with_boxes = Counter()
    ignored = 0
    ann_ids = Counter(a['id'] for a in data['annotations']
                      if isinstance(a, dict) and _int(a.get('id')))
    ann_ids = {i for i, n in ann_ids.items() if n > 1}
    for ann in data['annotations']:
        if not isinstance(ann, dict) or not _int(ann.get('id')):
            faults.append(Fault(ann_file, f'annotation {str(ann)[:80]} has no integer '
                                'id'))
            continue
        where = f'annotation id {ann["id"]!r}'
        img = images.get(ann.get('image_id')) if _int(ann.get('image_id')) else None
        problem = None
        bbox = ann.get('bbox')
        if ann['id'] in ann_ids:
            problem = 'duplicate annotation id'
        elif img is None:
            problem = f'image_id {ann.get("image_id")!r} is not an image of the file'
        elif not _int(ann.get('category_id')) or ann['category_id'] not in categories:
            problem = (f'unknown category_id {ann.get("category_id")!r} (the '
                       f'categories are {sorted(categories)[:30]})')
        elif not (isinstance(bbox, list) and len(bbox) == 4
                  and all(_number(v) for v in bbox)):
            problem = f'bbox {str(bbox)[:80]} is not [x, y, width, height]'
        else:
            x, y, w, h = bbox
            if w <= 0 or h <= 0:
                problem = f'zero or negative size box {bbox}'
            elif x < -BOX_SLACK or y < -BOX_SLACK or \
                    x + w > img['width'] + BOX_SLACK or y + h > img['height'] + BOX_SLACK:
                problem = (f'box {bbox} (x, y, w, h) is outside the image '
                           f'{img["file_name"]} ({img["width"]}x{img["height"]})')
        if problem:
            faults.append(Fault(ann_file, f'{where}: {problem}',
                                ('annotation', ann['id'])))
            continue
        if ann['category_id'] in wanted:
            with_boxes[ann['image_id']] += 1
        else:
            ignored += 1
    if ignored:
        notes.append(f'{ann_file}: {ignored} annotations of categories not among the '
                     'config\'s classes are ignored (as mmdet does)')
    empty = [i for i in images if not with_boxes[i]]
    if empty:
        notes.append(f'{ann_file}: {len(empty)} of {len(images)} images have no '
                     'annotations of the config\'s classes' +
                     ('; mmdet drops them (filter_cfg.filter_empty_gt)' if filter_empty_gt
                      else '; they are used as background-only images'))
    decoded = decoded_indices(decode, len(images), decode_limit)
    if len(decoded) < len(images):
        notes.append(f'{ann_file}: decoded {len(decoded)} of {len(images)} images '
                     '(evenly spaced; the others: header only; '
                     'data_check.decode_images=True for all)')
    for k, (img_id, img) in enumerate(images.items()):
        path = osp.join(img_dir, img['file_name'])
        problem, array = image_file_fault(path, k in decoded)
        if array is not None and array.shape[:2] != (img['height'], img['width']):
            problem = (f'the image is {array.shape[1]}x{array.shape[0]}, the json says '
                       f'{img["width"]}x{img["height"]} (image id {img_id!r})')
        if problem:
            faults.append(Fault(path, problem, ('image', img_id)))
    return CocoCheck(faults, notes, data)


def clean_coco(data: dict, faults: Iterable[Fault]) -> Tuple[dict, int, int]:
    """The json without the faults' images (and their annotations) and annotations;
    returns it and how many images and annotations were dropped."""
    drop_images = {f.drop[1] for f in faults if f.drop and f.drop[0] == 'image'}
    drop_anns = {f.drop[1] for f in faults if f.drop and f.drop[0] == 'annotation'}
    images = [i for i in data['images']
              if isinstance(i, dict) and _int(i.get('id')) and i['id'] not in drop_images]
    kept = {i['id'] for i in images}
    anns = [a for a in data['annotations']
            if isinstance(a, dict) and _int(a.get('id')) and a['id'] not in drop_anns
            and _int(a.get('image_id')) and a['image_id'] in kept]
    clean = dict(data, images=images, annotations=anns,
                 categories=[c for c in data['categories'] if isinstance(c, dict)
                             and _int(c.get('id'))])
    return clean, len(data['images']) - len(images), len(data['annotations']) - len(anns)


class CocoChecker(DatasetChecker):
    """The row of mmdet's ``CocoDataset`` and its subclasses (a user's, under any
    registered name; mmdet's Objects365, V3Det, ...); also checks datasets of other
    types whose ``ann_file`` is a ``.json`` and whose ``data_prefix`` has ``img`` (COCO
    format).

    Under ``'skip'`` the cleaned copy is a json without the bad annotations and the
    images whose files are bad, and a metric of ``val_evaluator``/``test_evaluator``
    reading the same json is pointed at it too.
    """

    def claims(self, ds: dict) -> bool:
        return _is_json(ds) and 'img' in (ds.get('data_prefix') or {})

    def key(self, ds: dict, cfg=None) -> Optional[Tuple]:
        if not ds.get('ann_file'):  # a CocoDataset reads it whatever its name
            return None
        return ('coco', _ann_file(ds), _img_dir(ds))

    def check(self, ds: dict, policy: DataCheckPolicy, cfg=None) -> CocoCheck:
        filter_cfg = ds.get('filter_cfg') or {}
        return check_coco(_ann_file(ds), _img_dir(ds), class_names(ds),
                          policy.decode_images, policy.decode_limit,
                          bool(filter_cfg.get('filter_empty_gt')))

    def clean(self, ds: dict, check: CocoCheck, loader: str,
              out_dir: str) -> Tuple[str, str]:
        ann_file = _ann_file(ds)
        data, n_img, n_ann = clean_coco(check.data, check.faults)
        cleaned = self.out_file(out_dir, loader, ann_file)
        write_replacing(cleaned, json.dumps(data))
        return cleaned, (f'skipped {n_img} images and {n_ann} annotations of {ann_file} '
                         f'for {len(check.faults)} faults (cleaned copy: {cleaned}):')

    def point(self, cfg, ds: dict, cleaned: str) -> None:
        ann_file = _ann_file(ds)
        ds['ann_file'] = cleaned
        for evaluator in ('val_evaluator', 'test_evaluator'):
            for metric in evaluator_metrics(cfg.get(evaluator)):
                if metric.get('ann_file') and resolve('', metric['ann_file']) == ann_file:
                    metric['ann_file'] = cleaned


def _is_json(ds: dict) -> bool:
    return str(ds.get('ann_file') or '').endswith('.json')


def _ann_file(ds: dict) -> str:
    return resolve(ds.get('data_root') or '', ds['ann_file'])


def _img_dir(ds: dict) -> str:
    return resolve(ds.get('data_root') or '', (ds.get('data_prefix') or {}).get('img')
                   or '')
