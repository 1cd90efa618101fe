"""Bad data: find it before training, then fail fast or skip it, as the config says.

``check_data_files`` (:mod:`mobilenet_tasks.datasets.checks`, called by tools/train.py and
tools/test.py before the Runner is built) runs :func:`validate_datasets` once the paths
exist. The policy is the top-level config key ``data_check``::

    data_check = dict(
        policy='fail',         # 'fail' (default): stop, naming each file and fault
                               # 'skip': leave the bad items out, warn, count in the log
                               # 'off': no content checks (paths are still checked)
        decode_images='auto',  # decode each image (True), only check its header
                               # (False), or ('auto') decode all when a dataset has at
                               # most decode_limit images, else decode_limit evenly
                               # spaced ones and check the others' headers
        decode_labels='auto',  # the same for Cityscapes label maps (their values are
                               # only checked when decoded)
        decode_limit=200,
        max_runtime_skips=100,  # 'skip': stop after this many run-time failures
    )

What is checked, per leaf dataset of the train/val/test loaders:

- COCO json (``CocoDataset`` and other datasets whose ``ann_file`` ends in ``.json``):
  the file parses (a truncated file is reported with the JSON error's line and column),
  has ``images``/``annotations``/``categories`` lists; the config's
  ``metainfo.classes`` are all among the json's category names (fatal under any
  policy: mmdet would silently shift the labels); each annotation's ``image_id`` and
  ``category_id`` exist; each ``bbox`` is 4 finite numbers with positive width and
  height, inside its image (1 pixel of slack); each image file exists, is not empty,
  starts like an image file and, when decoded, decodes to the size the json says.
  Images without annotations are not a fault (COCO train2017 has 1021): they are
  counted, and said to be dropped by mmdet when the dataset's
  ``filter_cfg.filter_empty_gt`` is set.
- Cityscapes (``CityscapesDataset``): each ``*_leftImg8bit.png`` has its
  ``*_gtFine_labelTrainIds.png``; both are non-empty image files; a decoded label map is
  single-channel with values in ``0..num_classes-1`` or 255 (ignore).

Under ``'skip'`` a cleaned copy is written into ``<work_dir>/data_check/`` and the
loader (and a matching evaluator's ``ann_file``) is pointed at it: a COCO json without the
bad annotations and the images whose files are bad, a Cityscapes list file (mmseg's
``ann_file``) without the bad images. A warning names what was skipped, and a
:class:`DataCheckHook` added to ``custom_hooks`` writes the counts into the run's log and
its message hub (``data_check/skipped``).

At run time (an image that goes bad after the check, or a fault the cheap checks do not
see): the train loader's dataset is wrapped in :class:`CheckedDataset`. A sample whose
loading or pipeline raises stops the run with a :class:`BadDataError` naming the file
under ``'fail'`` (mmcv's own error does not name an empty file); under ``'skip'`` it is
replaced by the next sample, with a warning, and counted
(``data_check/runtime_skipped`` in the message hub, a line in the log from
:class:`DataCheckHook`; workers share the counter). More than ``max_runtime_skips``
(default 100) such samples in a run stop it.

Cost: header checks read 16 bytes a file (COCO train2017: 118k opens, seconds); decoding
is what ``decode_limit`` bounds: on one core a 2048x1024 Cityscapes label map takes about
25 ms to decode and count, a leftImg8bit image a few times more, so the default 200 adds
some 40 s to the start of a full Cityscapes run (train and val), a few to COCO.
"""
import json
import math
import os
import os.path as osp
import warnings
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mobilenet_tasks.registry import HOOKS

from .checks import BadDataError

__all__ = [
    'POLICIES', 'Fault', 'DataCheckPolicy', 'BadDataError', 'data_check_policy',
    'check_coco', 'check_cityscapes', 'validate_datasets', 'DataCheckHook',
    'CheckedDataset'
]

POLICIES = ('fail', 'skip', 'off')
CITYSCAPES_NUM_CLASSES = 19
IGNORE_INDEX = 255
MAX_LISTED = 20  # faults listed in a message; the rest are counted
BOX_SLACK = 1.0  # pixels a box may stick out of its image
_MAGIC = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'BM', b'II*\x00', b'MM\x00*', b'GIF8')


class Fault(NamedTuple):
    """One bad item: the file it concerns, what is wrong, and what to drop for it."""
    file: str
    fault: str
    #: ``('image', id)``, ``('annotation', id)``, ``('name', name)``, or ``None`` when
    #: nothing can be dropped (the whole file is unusable).
    drop: Optional[Tuple[str, object]] = None

    def __str__(self):
        return f'{self.file}: {self.fault}'


class DataCheckPolicy(NamedTuple):
    policy: str = 'fail'
    decode_images: object = 'auto'
    decode_labels: object = 'auto'
    decode_limit: int = 200
    max_runtime_skips: int = 100


def data_check_policy(cfg) -> DataCheckPolicy:
    """The config's ``data_check`` (defaults for what it leaves out); ValueError for a
    bad value."""
    given = dict(cfg.get('data_check') or {})
    unknown = set(given) - set(DataCheckPolicy._fields)
    if unknown:
        raise ValueError(f'data_check: unknown keys {sorted(unknown)}; the keys are '
                         f'{", ".join(DataCheckPolicy._fields)}')
    policy = DataCheckPolicy(**given)
    if policy.policy not in POLICIES:
        raise ValueError(f'data_check.policy must be one of {POLICIES}, got '
                         f'{policy.policy!r}')
    for key in ('decode_images', 'decode_labels'):
        if getattr(policy, key) not in (True, False, 'auto'):
            raise ValueError(f'data_check.{key} must be True, False or \'auto\', got '
                             f'{getattr(policy, key)!r}')
    return policy


def _decoded(decode, count: int, limit: int) -> range:
    """The indices of the ``count`` files to decode: all (True), none (False), or for
    ``'auto'`` all when there are at most ``limit``, else ``limit`` evenly spaced ones
    (a systematic fault, such as labelIds for labelTrainIds, still shows)."""
    if decode == 'auto':
        if count <= limit:
            return range(count)
        return set(np.linspace(0, count - 1, max(limit, 1)).astype(int).tolist())
    return range(count) if decode else range(0)


def _image_file_fault(path: str, decode: bool, flags: Optional[int] = None,
                      ) -> Tuple[Optional[str], Optional[np.ndarray]]:
    """``(fault, decoded image)`` of an image file; fault None when it is fine."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return 'file does not exist', None
    except OSError as e:
        return f'cannot read the file ({e.strerror or e})', None
    if size == 0:
        return 'file is empty (0 bytes)', None
    try:
        if not decode:
            with open(path, 'rb') as f:
                head = f.read(16)
            if not (head.startswith(_MAGIC) or head[8:12] == b'WEBP'):
                return ('not an image file (its first bytes are no JPEG, PNG, BMP, '
                        'TIFF, GIF or WebP header)'), None
            return None, None
        import cv2
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        return f'cannot read the file ({e.strerror or e})', None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED if flags is None else flags)
    if image is None:
        return 'corrupt image: OpenCV cannot decode it (truncated or not an image)', None
    return None, image


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


# ----------------------------------------------------------------- COCO
class CocoCheck(NamedTuple):
    faults: List[Fault]
    #: Not faults: ``(count, sentence)`` for the log.
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
    decoded = _decoded(decode, len(images), decode_limit)
    if len(decoded) < len(images):
        notes.append(f'{ann_file}: decoded {len(decoded)} of {len(images)} images '
                     '(evenly spaced; the others: header only; '
                     'data_check.decode_images=True for all)')
    for k, (img_id, img) in enumerate(images.items()):
        path = osp.join(img_dir, img['file_name'])
        problem, array = _image_file_fault(path, k in decoded)
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


# ----------------------------------------------------------------- Cityscapes
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
    dec_img = _decoded(decode_images, len(images), decode_limit)
    dec_seg = _decoded(decode_labels, len(images), decode_limit)
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
        problem, array = _image_file_fault(str(image), k in dec_img)
        if problem:
            faults.append(Fault(str(image), problem, drop))
            continue
        if not osp.exists(label):
            faults.append(Fault(label, f'the label map of {image.name} does not exist; '
                                'convert the polygons (tools/dataset_converters/'
                                'cityscapes.py) or remove the image', drop))
            continue
        problem, seg = _image_file_fault(label, k in dec_seg, cv2.IMREAD_UNCHANGED)
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


# ----------------------------------------------------------------- the pass
def _resolve(root: str, path: str) -> str:
    return osp.abspath(path if osp.isabs(path) else osp.join(root or '', path))


def _class_names(ds, cfg) -> Optional[Sequence[str]]:
    meta = ds.get('metainfo') or {}
    classes = meta.get('classes')
    return list(classes) if classes is not None else None


def _summary(faults: List[Fault], limit: int = MAX_LISTED) -> List[str]:
    lines = [f'  {f}' for f in faults[:limit]]
    if len(faults) > limit:
        lines.append(f'  ... and {len(faults) - limit} more')
    return lines


def _write_replacing(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a file of this process, renamed into place:
    in a distributed run every process cleans the same data and writes the same file,
    and none may read another's half-written copy."""
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)


def validate_datasets(cfg, loaders: Sequence[str] = ('train_dataloader',
                                                     'val_dataloader',
                                                     'test_dataloader')) -> List[str]:
    """Check the loaders' data under the config's ``data_check`` policy (module doc).

    Under ``'skip'`` the config is changed in place to use the cleaned copies and gets
    a :class:`DataCheckHook`.

    Returns:
        list[str]: The lines logged (skipped items and notes).

    Raises:
        BadDataError: Under ``'fail'``, listing every fault with its file; under any
            policy for a fault that cannot be skipped (an unreadable json, config
            classes missing from it).
    """
    from .checks import (_is_cityscapes, _type_name,  # no import cycle
                         loader_datasets)
    policy = data_check_policy(cfg)
    if policy.policy == 'off':
        return []
    out_dir = osp.join(cfg.get('work_dir') or 'work_dirs', 'data_check')
    done: Dict[Tuple, Tuple] = {}  # the same data in several loaders: checked once
    lists: Dict[Tuple, str] = {}  # Cityscapes data -> the list file of its good images
    fatal, faults_all, log, skipped = [], [], [], 0
    for loader, ds in loader_datasets(cfg, loaders):
        root = ds.get('data_root') or ''
        prefix = ds.get('data_prefix') or {}
        if _is_cityscapes(ds):
            if ds.get('ann_file'):
                continue  # a list file chose the images: not ours to check
            img_dir = _resolve(root, prefix.get('img_path') or '')
            seg_dir = _resolve(root, prefix.get('seg_map_path') or '')
            key = ('cityscapes', img_dir, seg_dir)
            if key not in done:
                classes = _class_names(ds, cfg)
                done[key] = check_cityscapes(
                    img_dir, seg_dir, ds.get('img_suffix', '_leftImg8bit.png'),
                    ds.get('seg_map_suffix', '_gtFine_labelTrainIds.png'),
                    len(classes) if classes else CITYSCAPES_NUM_CLASSES,
                    policy.decode_images, policy.decode_labels,
                    policy.decode_limit)
            faults, good, notes = done[key]
            log += [f'{loader}: {note}' for note in notes]
            if not faults:
                continue
            faults_all += [(loader, f) for f in faults]
            if policy.policy == 'skip':
                list_file = lists.get(key)
                if list_file is None:  # once for loaders sharing the data
                    os.makedirs(out_dir, exist_ok=True)
                    list_file = lists[key] = osp.join(
                        out_dir, f'{loader}_{osp.basename(img_dir)}.txt')
                    _write_replacing(list_file,
                                     ''.join(f'{name}\n' for name in good))
                    skipped += len(faults)
                    log.append(f'{loader}: skipped {len(faults)} of '
                               f'{len(faults) + len(good)} images of {img_dir} '
                               f'(list of the others: {list_file}):')
                    log += _summary(faults)
                ds['ann_file'] = list_file
        elif str(ds.get('ann_file') or '').endswith('.json') and \
                ('img' in prefix or _type_name(ds) == 'CocoDataset'):
            ann_file = _resolve(root, ds['ann_file'])
            img_dir = _resolve(root, prefix.get('img') or '')
            key = ('coco', ann_file, img_dir)
            if key not in done:
                filter_cfg = ds.get('filter_cfg') or {}
                filter_empty = bool(filter_cfg.get('filter_empty_gt'))
                check = check_coco(ann_file, img_dir, _class_names(ds, cfg),
                                   policy.decode_images, policy.decode_limit,
                                   filter_empty)
                done[key] = (check, None)
            check, cleaned = done[key]
            log += [f'{loader}: {note}' for note in check.notes]
            if not check.faults:
                continue
            faults_all += [(loader, f) for f in check.faults]
            unskippable = [f for f in check.faults if f.drop is None]
            if unskippable:
                fatal += [(loader, f) for f in unskippable]
                continue
            if policy.policy == 'skip':
                if cleaned is None:
                    data, n_img, n_ann = clean_coco(check.data, check.faults)
                    os.makedirs(out_dir, exist_ok=True)
                    cleaned = osp.join(out_dir, f'{loader}_{osp.basename(ann_file)}')
                    _write_replacing(cleaned, json.dumps(data))
                    done[key] = (check, cleaned)
                    skipped += len(check.faults)
                    log.append(f'{loader}: skipped {n_img} images and {n_ann} '
                               f'annotations of {ann_file} for {len(check.faults)} '
                               f'faults (cleaned copy: {cleaned}):')
                    log += _summary(check.faults)
                ds['ann_file'] = cleaned
                for evaluator in ('val_evaluator', 'test_evaluator'):
                    for metric in _metrics(cfg.get(evaluator)):
                        if metric.get('ann_file') and \
                                _resolve('', metric['ann_file']) == ann_file:
                            metric['ann_file'] = cleaned
    if fatal or (faults_all and policy.policy == 'fail'):
        listed = fatal if fatal and policy.policy == 'skip' else faults_all
        loaders_of: Dict[Fault, List[str]] = {}  # val and test often share data
        for loader, fault in listed:
            loaders_of.setdefault(fault, []).append(loader)
        groups: Dict[Tuple[str, ...], List[Fault]] = {}
        for fault, names in loaders_of.items():
            groups.setdefault(tuple(names), []).append(fault)
        lines = []
        for names, faults in groups.items():
            lines.append(f'{", ".join(names)}: {len(faults)} fault'
                         f'{"s" if len(faults) != 1 else ""}')
            lines += _summary(faults)
        advice = []
        if fatal:
            advice.append('Unreadable annotation files, malformed entries and classes '
                          'missing from the json cannot be skipped: fix the file or the '
                          'config.')
        if len(listed) > len(fatal):
            advice.append('Fix or remove the other files, or set data_check = '
                          'dict(policy=\'skip\') in the config (or --cfg-options '
                          'data_check.policy=skip) to run without the bad items.')
        raise BadDataError('Bad data in the datasets of this config:\n' +
                           '\n'.join(lines + advice))
    if skipped:
        warnings.warn('data_check: ' + '\n'.join(log), stacklevel=2)
    train = cfg.get('train_dataloader') if 'train_dataloader' in loaders else None
    wrapped = False
    if train and isinstance(train.get('dataset'), dict):
        if _type_name(train['dataset']) != 'CheckedDataset':
            train['dataset'] = dict(type='mobilenet_tasks.CheckedDataset',
                                    dataset=train['dataset'], policy=policy.policy,
                                    max_skips=policy.max_runtime_skips)
        wrapped = True
    if log or wrapped:
        hooks = list(cfg.get('custom_hooks') or [])
        hooks = [h for h in hooks if str(h.get('type', '')).split('.')[-1]
                 != 'DataCheckHook']
        hooks.append(dict(type='mobilenet_tasks.DataCheckHook', lines=log,
                          skipped=skipped))
        cfg['custom_hooks'] = hooks
    return log


def _metrics(evaluator) -> List[dict]:
    if isinstance(evaluator, dict):
        return [evaluator]
    if isinstance(evaluator, (list, tuple)):
        return [m for m in evaluator if isinstance(m, dict)]
    return []


try:
    from mmengine.hooks import Hook
except ImportError:  # pragma: no cover
    Hook = object


@HOOKS.register_module(force=True)
class DataCheckHook(Hook):
    """Writes what the data check skipped (and its notes) into the run's log, and the
    count into the message hub as ``data_check/skipped``; then, every ``interval``
    iterations and at the end, the samples :class:`CheckedDataset` skipped at run time
    (``data_check/runtime_skipped``) when there are new ones."""
    priority = 'VERY_LOW'

    def __init__(self, lines: Sequence[str] = (), skipped: int = 0,
                 interval: int = 50):
        self.lines = list(lines)
        self.skipped = int(skipped)
        self.interval = interval
        self._reported = 0

    def before_run(self, runner) -> None:
        runner.message_hub.update_info('data_check/skipped', self.skipped)
        if not self.lines:
            return
        head = (f'data_check: skipped {self.skipped} bad items' if self.skipped else
                'data_check: no faults')
        runner.logger.warning('\n'.join([head] + self.lines))

    def _runtime(self, runner) -> None:
        dataset = getattr(getattr(runner, 'train_dataloader', None), 'dataset', None)
        if not isinstance(dataset, CheckedDataset):
            return
        count = dataset.skipped
        runner.message_hub.update_info('data_check/runtime_skipped', count)
        if count > self._reported:
            self._reported = count
            runner.logger.warning(
                f'data_check: {count} training samples failed to load at run time and '
                'were replaced by others (the warnings above name them)')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.every_n_train_iters(runner, self.interval):
            self._runtime(runner)

    def after_train(self, runner) -> None:
        self._runtime(runner)


class CheckedDataset:
    """Wraps a dataset: a sample whose loading raises stops the run naming the file
    (``policy='fail'``), or is replaced by the next one, warned about and counted
    (``'skip'``; at most ``max_skips`` in the run). Everything else is the wrapped
    dataset's (``metainfo``, ``get_data_info``, ...)."""

    def __init__(self, dataset, policy: str = 'fail', max_skips: int = 100):
        if isinstance(dataset, dict):
            from mmengine.registry import DATASETS as ROOT_DATASETS
            dataset = ROOT_DATASETS.build(dataset)  # in the run's default scope
        import multiprocessing
        self.dataset = dataset
        self.policy = policy
        self.max_skips = max_skips
        self._skipped = multiprocessing.Value('i', 0)  # shared with (forked) workers

    @property
    def skipped(self) -> int:
        return self._skipped.value

    def __getattr__(self, name):
        if name in ('dataset', '_skipped'):
            raise AttributeError(name)  # while unpickling
        return getattr(self.dataset, name)

    def __getstate__(self):
        from multiprocessing.context import assert_spawning
        state = self.__dict__.copy()
        try:
            assert_spawning(self)  # to a spawned worker: share the counter
        except RuntimeError:  # a plain copy: its own counter
            state['_skipped'] = self._skipped.value
        return state

    def __setstate__(self, state):
        if isinstance(state['_skipped'], int):
            import multiprocessing
            state['_skipped'] = multiprocessing.Value('i', state['_skipped'])
        self.__dict__.update(state)

    def __len__(self):
        return len(self.dataset)

    def _name(self, idx: int) -> str:
        try:
            info = self.dataset.get_data_info(idx)
            return str(info.get('img_path') or info.get('seg_map_path') or idx)
        except Exception:  # noqa: B902 - only for the message
            return f'sample {idx}'

    def __getitem__(self, idx: int):
        tries = 0
        while True:
            try:
                return self.dataset[idx]
            except Exception as error:  # noqa: B902 - any fault of one sample
                name = self._name(idx)
                message = f'{name}: {type(error).__name__}: {error}'.strip()
                if self.policy != 'skip':
                    raise BadDataError(
                        f'Bad data at run time: {message}. Fix or remove the file, or '
                        "set data_check = dict(policy='skip') to train without it."
                    ) from error
                with self._skipped.get_lock():
                    self._skipped.value += 1
                    count = self._skipped.value
                if count > self.max_skips or tries >= len(self):
                    raise BadDataError(
                        f'Bad data at run time: {count} samples failed to load (more '
                        f'than data_check.max_runtime_skips={self.max_skips}); the last: '
                        f'{message}') from error
                warnings.warn(f'data_check: skipped at run time {message}')
                tries += 1
                idx = (idx + 1) % len(self)


from mobilenet_tasks.registry import DATASETS  # noqa: E402

DATASETS.register_module(name='CheckedDataset', module=CheckedDataset, force=True)
