"""A small synthetic detection dataset in COCO format, generated deterministically.

Four shapes told apart by their form (``DEMO_CLASSES``: circle, square, triangle, star),
1 to 4 per image, 15% to 60% of the image side, each in a random colour (so colour does
not give the class away) and, for the polygons, at a random rotation. The backgrounds
mix smooth colour gradients and low-frequency colour noise with fine grain, and carry
distractors that are no class: thin lines, scribbles, small dots and soft irregular
splotches. Objects overlap a little; every box is the tight box of the pixels of the
object that stay visible once the objects above it are drawn, and an object less than
half visible is not drawn at all.

    from mobilenet_tasks.datasets import DEMO_METAINFO, make_demo_coco
    summary = make_demo_coco('data/demo_coco')   # seconds; reused when already there

writes ``train/*.jpg``, ``val/*.jpg``, ``annotations/instances_{train,val}.json`` and a
manifest ``demo_coco.json``. An mmdet config reads it with ``CocoDataset(data_root=...,
ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
metainfo=DEMO_METAINFO)``.

Determinism: image ``index`` of split ``split`` is drawn from
``numpy.random.default_rng([seed, split_code, index])`` alone, so the same arguments
give the same pixels and byte-identical json, and the val set does not depend on
``num_train``.
"""
import json
import operator
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from .generated import publish_generated

__all__ = [
    'DEMO_CLASSES', 'DEMO_METAINFO', 'DEMO_COCO_VERSION', 'MANIFEST_NAME',
    'draw_demo_image', 'image_rng', 'make_demo_coco'
]

DEMO_CLASSES = ('circle', 'square', 'triangle', 'star')
DEMO_METAINFO = dict(
    classes=DEMO_CLASSES,
    palette=[(220, 20, 60), (0, 120, 255), (0, 170, 60), (250, 170, 30)])
# Bump when the drawing or the file layout changes: a manifest of another version is
# not reused.
DEMO_COCO_VERSION = 1
MANIFEST_NAME = 'demo_coco.json'
SPLITS = ('train', 'val')
_SPLIT_CODES = {'train': 0, 'val': 1}

# Object size: diameter of the circumscribed circle, as a fraction of the image side.
MIN_OBJECT_FRACTION = 0.15
MAX_OBJECT_FRACTION = 0.60
MIN_BOX_SIDE = 4  # pixels; smaller visible remnants are dropped
MIN_VISIBLE = 0.5  # objects less visible than this (after occlusion) are dropped
_PLACE_VISIBLE = 0.7  # placement keeps every object at least this visible
_MAX_OBJECTS_LIMIT = 8
_MIN_IMAGE_SIZE = 64
_MAX_IMAGE_SIZE = 4096
# quality 95 without chroma subsampling: the colour edges of the shapes stay sharp
_JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 95]
if hasattr(cv2, 'IMWRITE_JPEG_SAMPLING_FACTOR'):  # OpenCV >= 4.5.5
    _JPEG_PARAMS += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
_SHIFT = 4  # sub-pixel bits for cv2 drawing


# ---------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------
def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of image ``index`` of ``split`` ('train' or 'val')."""
    if split not in _SPLIT_CODES:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    return np.random.default_rng([int(seed), _SPLIT_CODES[split], int(index)])


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << _SHIFT)).astype(np.int32)


def _shape_polygon(name: str, radius: float, angle: float,
                   rng: np.random.Generator) -> Optional[np.ndarray]:
    """Vertices (N, 2) around (0, 0) with circumradius ``radius``; None for a circle."""
    if name == 'circle':
        return None
    if name == 'square':
        angles = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif name == 'triangle':
        # roughly equilateral: each vertex moves by up to 10 degrees, 10% of the radius
        angles = angle + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.17, 0.17, 3)
        radii = radius * rng.uniform(0.9, 1.0, 3)
    elif name == 'star':
        inner = rng.uniform(0.38, 0.5)
        angles = angle + np.arange(10) * np.pi / 5
        radii = radius * np.where(np.arange(10) % 2 == 0, 1.0, inner)
    else:
        raise ValueError(f'unknown shape {name!r}')
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _draw_mask(size: int, name: str, cx: float, cy: float, radius: float,
               polygon: Optional[np.ndarray]) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    if polygon is None:
        cv2.circle(mask, tuple(int(v) for v in _fixed((cx, cy))),
                   int(_fixed(radius)), 1, -1, cv2.LINE_8, _SHIFT)
    else:
        cv2.fillPoly(mask, [_fixed(polygon + (cx, cy))], 1, cv2.LINE_8, _SHIFT)
    return mask.view(bool)


def _box(mask: np.ndarray) -> Optional[List[int]]:
    """Tight [x, y, w, h] of the True pixels (x + w is one past the last column)."""
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
            int(rows[-1] - rows[0] + 1)]


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float32)


def _noise(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    """Zero-mean uniform float32 noise of standard deviation ``std`` (fast)."""
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(
        std * np.sqrt(12))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Float32 (size, size, 3) RGB background: gradient or colour noise, plus clutter."""
    axis = np.arange(size, dtype=np.float32) / (size - 1)
    xx, yy = axis[None, :], axis[:, None]
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two colours
        theta = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(theta) + yy * np.sin(theta)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        c0, c1 = _random_colour(rng), _random_colour(rng)
        bg = c0 + (c1 - c0) * t[..., None].astype(np.float32)
    elif kind == 1:  # radial gradient around a random point
        cx, cy = rng.uniform(0, 1, 2)
        t = np.sqrt((xx - cx)**2 + (yy - cy)**2)
        t /= t.max()
        c0, c1 = _random_colour(rng), _random_colour(rng)
        bg = c0 + (c1 - c0) * t[..., None].astype(np.float32)
    else:  # low-frequency colour noise with a finer texture on top
        k = int(rng.integers(3, 8))
        base = rng.uniform(60, 196, 3)
        coarse = (base + rng.uniform(-1, 1, (k, k, 3)) * rng.uniform(40, 110)).astype(
            np.float32)
        bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        k2 = max(size // 10, 4)
        fine = _noise(rng, (k2, k2, 3), rng.uniform(5, 20))
        bg += cv2.resize(fine, (size, size), interpolation=cv2.INTER_LINEAR)
    bg = np.clip(bg, 0, 255).astype(np.uint8)

    # distractors: no class, so drawn under the objects
    if rng.random() < 0.5:  # soft irregular splotches
        k = int(rng.integers(4, 8))
        field = cv2.resize(rng.uniform(0, 1, (k, k)).astype(np.float32), (size, size),
                           interpolation=cv2.INTER_CUBIC)
        splotch = (field > np.quantile(field, rng.uniform(0.8, 0.92))).astype(np.float32)
        ksize = 2 * (size // 40) + 1
        alpha = cv2.GaussianBlur(splotch, (ksize, ksize), 0) * rng.uniform(0.3, 0.7)
        bg = (bg * (1 - alpha[..., None]) +
              _random_colour(rng) * alpha[..., None]).astype(np.uint8)
    for _ in range(int(rng.integers(0, 5))):  # thin straight lines
        p0, p1 = rng.uniform(-0.2, 1.2, (2, 2)) * size
        cv2.line(bg, tuple(int(v) for v in _fixed(p0)), tuple(int(v) for v in _fixed(p1)),
                 _random_colour(rng).tolist(), int(rng.integers(1, 3)), cv2.LINE_AA,
                 _SHIFT)
    for _ in range(int(rng.integers(0, 3))):  # scribbles: short random walks
        n = int(rng.integers(3, 7))
        steps = rng.normal(0, 0.12 * size, (n, 2))
        points = np.cumsum(steps, axis=0) + rng.uniform(0, size, 2)
        cv2.polylines(bg, [_fixed(points)], False, _random_colour(rng).tolist(),
                      int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
    max_dot = max(1.0, 0.02 * size)
    for _ in range(int(rng.integers(0, 6))):  # dots, far smaller than any object
        centre = rng.uniform(0, size, 2)
        cv2.circle(bg, tuple(int(v) for v in _fixed(centre)),
                   int(_fixed(rng.uniform(1.0, max_dot))),
                   _random_colour(rng).tolist(), -1, cv2.LINE_AA, _SHIFT)

    return bg.astype(np.float32) + _noise(rng, bg.shape, rng.uniform(2, 8))


def _place_objects(rng: np.random.Generator, size: int,
                   num: int) -> List[Dict]:
    """Shapes on the canvas, bottom first; each keeps >= _PLACE_VISIBLE visible."""
    log_lo = np.log(MIN_OBJECT_FRACTION * size)
    log_hi = np.log(MAX_OBJECT_FRACTION * size)
    diameters = np.sort(np.exp(rng.uniform(log_lo, log_hi, num)))[::-1]  # big first
    placed: List[Dict] = []
    for diameter in diameters:
        label = int(rng.integers(len(DEMO_CLASSES)))
        name = DEMO_CLASSES[label]
        for attempt in range(30):
            d = max(diameter * 0.95**attempt, MIN_OBJECT_FRACTION * size)
            radius = d / 2
            angle = rng.uniform(0, 2 * np.pi)
            polygon = _shape_polygon(name, radius, angle, rng)
            cx, cy = rng.uniform(radius + 1, size - radius - 2, 2)
            mask = _draw_mask(size, name, cx, cy, radius, polygon)
            full = int(np.count_nonzero(mask))
            if full == 0:
                continue
            if all(
                    np.count_nonzero(obj['visible'] & ~mask) >= _PLACE_VISIBLE *
                    obj['full_area'] for obj in placed):
                for obj in placed:
                    obj['visible'] &= ~mask
                placed.append(
                    dict(label=label, name=name, full_mask=mask, visible=mask.copy(),
                         full_area=full, centre=(float(cx), float(cy)),
                         radius=float(radius)))
                break
    return placed


def _visible_objects(objects: List[Dict], size: int) -> List[Dict]:
    """Recompute visibility bottom-up; drop (and do not draw) mostly hidden objects."""
    kept = list(objects)
    while True:
        label_map = np.full((size, size), -1, np.int16)
        for k, obj in enumerate(kept):
            label_map[obj['full_mask']] = k
        worst, worst_frac = None, None
        for k, obj in enumerate(kept):
            visible = label_map == k
            obj['visible'] = visible
            obj['area'] = int(np.count_nonzero(visible))
            obj['visible_fraction'] = obj['area'] / obj['full_area']
            box = _box(visible)
            obj['bbox'] = box
            ok = (box is not None and obj['visible_fraction'] >= MIN_VISIBLE
                  and min(box[2], box[3]) >= MIN_BOX_SIDE)
            if not ok and (worst is None or obj['visible_fraction'] < worst_frac):
                worst, worst_frac = k, obj['visible_fraction']
        if worst is None:
            return kept
        del kept[worst]


def _paint(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray,
           centre: Tuple[float, float], radius: float) -> None:
    """Fill ``mask`` of ``canvas`` with a random colour that stands out, shaded."""
    ys, xs = np.nonzero(mask)
    under = canvas[ys, xs].mean(axis=0)
    best, best_dist = None, -1.0
    for _ in range(12):
        colour = _random_colour(rng)
        dist = float(np.linalg.norm(colour - under))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= 100:
            break
    phi = rng.uniform(0, 2 * np.pi)
    proj = ((xs - centre[0]) * np.cos(phi) + (ys - centre[1]) * np.sin(phi)) / radius
    shade = 1 + rng.uniform(-0.25, 0.25) * proj
    pixels = best[None] * shade[:, None]
    pixels += _noise(rng, pixels.shape, rng.uniform(1, 5))
    if rng.random() < 0.3:  # an outline, darker or lighter
        width = int(rng.integers(1, 3))
        inner = cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8),
                          iterations=width).view(bool)
        rim = ~inner[ys, xs]
        target = 0.0 if rng.random() < 0.6 else 255.0
        pixels[rim] = pixels[rim] * 0.4 + target * 0.6
    canvas[ys, xs] = pixels


def draw_demo_image(rng: np.random.Generator,
                    size: int = 160,
                    min_objects: int = 1,
                    max_objects: int = 4,
                    return_background: bool = False):
    """Draw one demo image.

    Args:
        rng: the image's generator (``image_rng(seed, split, index)`` in the dataset).
        size: side of the square image in pixels.
        min_objects, max_objects: how many objects to draw (uniform; placement keeps
            at least ``min_objects`` in practice).
        return_background: also return the image before the objects were drawn.

    Returns:
        ``(image, objects)`` or ``(image, objects, background)``: ``image`` is a
        (size, size, 3) uint8 RGB array; ``objects`` lists, bottom first, dicts with
        ``label`` (0-based index into ``DEMO_CLASSES``), ``category_id`` (label + 1),
        ``name``, ``bbox`` ([x, y, w, h] of the visible pixels; x + w is one past the
        last column), ``mask`` (bool (size, size), visible pixels), ``full_mask`` (the
        whole shape), ``area`` (visible pixels) and ``visible_fraction``.
    """
    num = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(10):
        objects = _visible_objects(_place_objects(rng, size, num), size)
        if len(objects) >= min_objects:
            break
    background = _background(rng, size)
    canvas = background.copy()
    for obj in objects:
        _paint(rng, canvas, obj['full_mask'], obj['centre'], obj['radius'])
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    out = [
        dict(label=obj['label'], category_id=obj['label'] + 1, name=obj['name'],
             bbox=obj['bbox'], mask=obj['visible'], full_mask=obj['full_mask'],
             area=obj['area'], visible_fraction=obj['visible_fraction'])
        for obj in objects
    ]
    if return_background:
        return image, out, np.clip(np.round(background), 0, 255).astype(np.uint8)
    return image, out


def _polygons(mask: np.ndarray, box: List[int]) -> List[List[float]]:
    """COCO polygons (outer contours; holes are not represented) of a bool mask.

    Traced on the mask upsampled 4x so the outline follows the pixel edges rather than
    the centres of the boundary pixels, then simplified to within half a pixel:
    rasterised back with pycocotools it overlaps the mask with an IoU of about 0.99.
    """
    x, y, w, h = box
    f = 4
    crop = mask[y:y + h, x:x + w].view(np.uint8)
    up = np.repeat(np.repeat(crop, f, axis=0), f, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour, 2.0, True).reshape(-1, 2)
        if len(contour) < 3:
            continue
        points = contour / f + (x + 0.5 / f, y + 0.5 / f)  # exact binary fractions
        polygons.append([float(v) for v in points.reshape(-1)])
    return polygons


# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int, high: Optional[int] = None) -> int:
    if isinstance(value, bool):
        raise ValueError(f'{name} must be an integer, got {value!r}')
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f'{name} must be an integer, got {value!r}') from None
    if value < low or (high is not None and value > high):
        bound = f'>= {low}' if high is None else f'in [{low}, {high}]'
        raise ValueError(f'{name} must be {bound}, got {value}')
    return value


def _check_args(num_train, num_val, image_size, seed, min_objects, max_objects) -> Dict:
    args = dict(
        num_train=_check_int('num_train', num_train, 1),
        num_val=_check_int('num_val', num_val, 1),
        image_size=_check_int('image_size', image_size, _MIN_IMAGE_SIZE, _MAX_IMAGE_SIZE),
        seed=_check_int('seed', seed, 0),
        min_objects=_check_int('min_objects', min_objects, 1, _MAX_OBJECTS_LIMIT),
        max_objects=_check_int('max_objects', max_objects, 1, _MAX_OBJECTS_LIMIT))
    if args['min_objects'] > args['max_objects']:
        raise ValueError(f'min_objects ({args["min_objects"]}) must not exceed '
                         f'max_objects ({args["max_objects"]})')
    return args


def _write_split(root: Path, split: str, num: int, args: Dict) -> Dict:
    img_dir = root / split
    img_dir.mkdir(parents=True)
    size = args['image_size']
    images, annotations = [], []
    counts = {name: 0 for name in DEMO_CLASSES}
    for index in range(num):
        rng = image_rng(args['seed'], split, index)
        image, objects = draw_demo_image(rng, size, args['min_objects'],
                                         args['max_objects'])
        file_name = f'{index:06d}.jpg'
        ok, data = cv2.imencode('.jpg', image[..., ::-1], _JPEG_PARAMS)
        if not ok:
            raise RuntimeError(f'could not encode {split}/{file_name}')
        (img_dir / file_name).write_bytes(data.tobytes())
        image_id = index + 1
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
        for obj in objects:
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id,
                     category_id=obj['category_id'], bbox=obj['bbox'], area=obj['area'],
                     iscrowd=0, segmentation=_polygons(obj['mask'], obj['bbox'])))
            counts[obj['name']] += 1
    coco = dict(
        info=dict(description=f'mobilenet_tasks demo shapes ({split})',
                  version=str(DEMO_COCO_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(DEMO_CLASSES)
        ])
    ann_dir = root / 'annotations'
    ann_dir.mkdir(exist_ok=True)
    # json.dumps runs the C encoder; json.dump would stream through the Python one
    (ann_dir / f'instances_{split}.json').write_text(
        json.dumps(coco, separators=(',', ':')))
    return dict(num_images=num, num_objects=len(annotations), counts=counts)


def _files_complete(out_dir: Path, args: Dict) -> bool:
    for split in SPLITS:
        if not (out_dir / 'annotations' / f'instances_{split}.json').is_file():
            return False
        img_dir = out_dir / split
        if not img_dir.is_dir():
            return False
        n = sum(1 for p in img_dir.iterdir() if p.suffix == '.jpg')
        if n != args[f'num_{split}']:
            return False
    return True


def _summary(out_dir: Path, manifest: Dict, reused: bool) -> Dict:
    splits = {}
    for split in SPLITS:
        info = dict(manifest['splits'][split])
        info['counts'] = {name: info['counts'][name] for name in DEMO_CLASSES}
        info['img_dir'] = str(out_dir / split)
        info['ann_file'] = str(out_dir / 'annotations' / f'instances_{split}.json')
        splits[split] = info
    counts = {
        name: sum(splits[s]['counts'][name] for s in SPLITS)
        for name in DEMO_CLASSES
    }
    return dict(out_dir=str(out_dir), manifest=str(out_dir / MANIFEST_NAME),
                classes=DEMO_CLASSES, args=dict(manifest['args']), reused=reused,
                splits=splits, counts=counts)


def make_demo_coco(out_dir: Union[str, os.PathLike],
                   num_train: int = 400,
                   num_val: int = 100,
                   image_size: int = 160,
                   seed: int = 0,
                   min_objects: int = 1,
                   max_objects: int = 4) -> Dict:
    """Write the demo dataset into ``out_dir`` unless it is already there.

    Layout: ``train/NNNNNN.jpg``, ``val/NNNNNN.jpg``, ``annotations/instances_train.json``,
    ``annotations/instances_val.json`` (``file_name`` relative to the split folder) and
    the manifest ``demo_coco.json`` (arguments, version, counts).

    If ``out_dir`` holds a complete dataset made with the same arguments and version it
    is reused. Otherwise the dataset is written into a temporary directory next to
    ``out_dir`` and renamed into place at the end, replacing a previous demo dataset; a
    non-empty ``out_dir`` without a manifest is not touched (FileExistsError).

    Returns:
        dict: ``out_dir``, ``manifest``, ``classes``, ``args``, ``reused``, ``splits``
        (per split: ``img_dir``, ``ann_file``, ``num_images``, ``num_objects``,
        ``counts`` per class) and ``counts`` (per class, both splits).
    """
    args = _check_args(num_train, num_val, image_size, seed, min_objects, max_objects)
    out_dir = Path(out_dir).absolute()

    def write(tmp: Path) -> Dict:
        splits = {
            split: _write_split(tmp, split, args[f'num_{split}'], args)
            for split in SPLITS
        }
        return dict(generator='mobilenet_tasks.datasets.demo_coco',
                    classes=list(DEMO_CLASSES), splits=splits)

    manifest, reused = publish_generated(
        out_dir, MANIFEST_NAME, DEMO_COCO_VERSION, args,
        lambda d: _files_complete(d, args), write)
    return _summary(out_dir, manifest, reused=reused)
