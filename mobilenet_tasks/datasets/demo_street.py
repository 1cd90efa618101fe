"""Drawing one synthetic street scene (:func:`draw_demo_street`): the polygons of a
Cityscapes-like layout, labelled with real Cityscapes classes, painted with textures and
rasterised as cityscapesscripts rasterises them (PIL), so image and label map agree pixel
for pixel. :mod:`.demo_cityscapes` writes them as a dataset.
"""
import colorsys
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw

# The Cityscapes labels the scenes use, with their trainIds (cityscapesscripts'
# helpers/labels.py); 'ego vehicle' is a void label (trainId 255).
CITYSCAPES_TRAIN_IDS = {
    'road': 0,
    'sidewalk': 1,
    'building': 2,
    'pole': 5,
    'traffic light': 6,
    'traffic sign': 7,
    'vegetation': 8,
    'terrain': 9,
    'sky': 10,
    'person': 11,
    'car': 13,
    'ego vehicle': 255
}
DEMO_CITYSCAPES_LABELS = tuple(CITYSCAPES_TRAIN_IDS)

# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------
def _clip_polygon(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon to [0, width-1] x [0, height-1]."""
    poly = [tuple(p) for p in np.asarray(points, np.float64)]
    for axis, bound, keep_below in ((0, 0.0, False), (0, width - 1.0, True),
                                    (1, 0.0, False), (1, height - 1.0, True)):
        if not poly:
            break
        inside = (lambda p: p[axis] <= bound) if keep_below else (
            lambda p: p[axis] >= bound)
        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(_cross(prev, cur, axis, bound))
                out.append(cur)
            elif inside(prev):
                out.append(_cross(prev, cur, axis, bound))
        poly = out
    return np.array(poly, np.float64).reshape(-1, 2)


def _cross(p, q, axis, bound):
    t = (bound - p[axis]) / (q[axis] - p[axis])
    point = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
    point[axis] = bound
    return tuple(point)


def _int_polygon(points, width: int, height: int) -> Optional[List[List[int]]]:
    """Clipped integer polygon as cityscapes stores it; None if it degenerates."""
    clipped = np.round(_clip_polygon(points, width, height)).astype(np.int64)
    out: List[List[int]] = []
    for x, y in clipped.tolist():
        if not out or out[-1] != [x, y]:
            out.append([x, y])
    while len(out) > 1 and out[0] == out[-1]:
        out.pop()
    if len(out) < 3 or len({p[0] for p in out}) < 2 or len({p[1] for p in out}) < 2:
        return None
    return out


def _rasterize(polygon: List[List[int]], width: int, height: int) -> np.ndarray:
    """Bool mask of a polygon, rasterised exactly as cityscapesscripts' json2labelImg."""
    img = Image.new('L', (width, height), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in polygon], fill=1)
    return np.asarray(img, dtype=bool)


# ---------------------------------------------------------------------------------------
# Colours and textures (float32 RGB)
# ---------------------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def _noise(rng: np.random.Generator, shape, std: float) -> np.ndarray:
    return (rng.random(shape, dtype=np.float32) - np.float32(0.5)) * np.float32(
        std * np.sqrt(12))


def _blotches(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], shape (h, w)."""
    ky, kx = max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w))
    field = rng.uniform(-1, 1, (ky, kx)).astype(np.float32)
    return cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC)


def _flat(colour: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.empty((h, w, 3), np.float32)
    out[:] = colour
    return out


def _texture(rng: np.random.Generator, label: str, box: Tuple[int, int, int, int],
             style: Dict) -> np.ndarray:
    """A (h, w, 3) texture for a ``label`` object covering ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    yy = np.arange(y0, y1, dtype=np.float32)[:, None, None]
    if label == 'sky':
        t = yy / max(style['horizon'], 1)
        tex = style['sky_top'] + (style['sky_low'] - style['sky_top']) * np.clip(t, 0, 1)
        tex = tex + _blotches(rng, h, w, 6)[..., None] * style['cloudiness']
        return np.broadcast_to(tex, (h, w, 3)).astype(np.float32)
    if label == 'building':
        base = _hsv(rng.uniform(0, 1), rng.uniform(0.05, 0.35), rng.uniform(0.35, 0.85))
        tex = _flat(base, h, w) * (1 + 0.08 * _blotches(rng, h, w, 4))[..., None]
        # a grid of windows
        step_x, step_y = rng.uniform(0.1, 0.25) * w + 4, rng.uniform(0.08, 0.2) * h + 4
        fill = rng.uniform(0.4, 0.7)
        glass = _hsv(rng.uniform(0.5, 0.7), rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.45))
        xs = (np.arange(w) % step_x) / step_x
        ys = (np.arange(h) % step_y) / step_y
        windows = (np.abs(ys - 0.5)[:, None] < fill / 2) & (np.abs(xs - 0.5)[None]
                                                            < fill / 2)
        windows[:max(2, int(0.05 * h))] = False
        tex[windows] = glass
        return tex
    if label in ('vegetation', 'terrain'):
        if label == 'vegetation':
            base = _hsv(rng.uniform(0.2, 0.36), rng.uniform(0.45, 0.8),
                        rng.uniform(0.25, 0.6))
        else:
            base = _hsv(rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.6),
                        rng.uniform(0.4, 0.7))
        shade = 1 + 0.25 * _blotches(rng, h, w, 8) + 0.1 * _blotches(rng, h, w, 30)
        return _flat(base, h, w) * shade[..., None] + _noise(rng, (h, w, 3), 10)
    if label == 'road':
        tex = _flat(style['road'], h, w) * (1 + 0.06 * _blotches(rng, h, w, 6))[..., None]
        return tex + _noise(rng, (h, w, 3), 6)
    if label == 'sidewalk':
        tex = _flat(style['sidewalk'], h, w)
        tile = max(3, int(rng.uniform(0.02, 0.05) * style['width']))
        xs, ys = np.arange(x0, x1) % tile == 0, np.arange(y0, y1) % tile == 0
        tex[ys[:, None] | xs[None]] *= 0.85
        return tex + _noise(rng, (h, w, 3), 5)
    if label == 'pole':
        base = _hsv(0, 0, rng.uniform(0.3, 0.6))
        xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
        return _flat(base, h, w) * (1 - 0.3 * xx)
    if label == 'traffic sign':
        base = [
            _hsv(0.0, 0.85, 0.8),
            _hsv(0.6, 0.85, 0.7),
            _hsv(0.14, 0.9, 0.9),
            _hsv(0, 0, 0.9)
        ][int(rng.integers(4))]
        tex = _flat(base, h, w)
        tex[h // 3:2 * h // 3, w // 4:3 * w // 4] = _hsv(0, 0, 0.95)
        return tex
    if label == 'traffic light':
        tex = _flat(_hsv(0.15, 0.2, rng.uniform(0.05, 0.25)), h, w)
        lamp = int(rng.integers(3))
        colour = (_hsv(0, 0.9, 1), _hsv(0.12, 0.9, 1), _hsv(0.33, 0.9, 1))[lamp]
        cy = int((lamp + 0.5) * h / 3)
        cv2.circle(tex, (w // 2, cy), max(1, w // 3), colour.tolist(), -1)
        return tex
    if label == 'car':
        body = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.8), rng.uniform(0.15, 0.95))
        tex = _flat(body, h, w)
        rows = np.arange(h) / max(h - 1, 1)
        tex[(rows > 0.08) & (rows < 0.4)] = _hsv(0.58, 0.2, rng.uniform(0.1,
                                                                        0.3))  # windows
        tex[rows > 0.85] *= 0.3  # tyres and shadow
        lights = (rows > 0.5) & (rows < 0.62)
        edge = max(1, w // 8)
        tex[lights, :edge] = tex[lights, -edge:] = _hsv(0.0, 0.9, 0.85)
        return tex + _noise(rng, (h, w, 3), 4)
    if label == 'person':
        clothes = _hsv(rng.uniform(0, 1), rng.uniform(0.1, 0.8), rng.uniform(0.1, 0.8))
        tex = _flat(clothes, h, w)
        rows = np.arange(h) / max(h - 1, 1)
        tex[rows < 0.16] = _hsv(rng.uniform(0.03, 0.1), rng.uniform(0.3, 0.6),
                                rng.uniform(0.3, 0.9))  # head
        tex[rows > 0.55] = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.5),
                                rng.uniform(0.1, 0.5))  # legs
        return tex
    if label == 'ego vehicle':
        tex = _flat(_hsv(rng.uniform(0, 1), rng.uniform(0, 0.4), rng.uniform(0.05, 0.3)),
                    h, w)
        xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
        return tex * (1 + 0.4 * np.exp(-xx**2 * 8))
    raise ValueError(f'no texture for label {label!r}')


# ---------------------------------------------------------------------------------------
# Scene layout
# ---------------------------------------------------------------------------------------
_PERSON = np.array([(-0.25, 0), (-0.05, 0), (0, 0.42), (0.05, 0), (0.25, 0), (0.2, 0.46),
                    (0.3, 0.56), (0.3, 0.8), (0.1, 0.83), (0.09, 0.86), (0.15, 0.9),
                    (0.13, 0.97), (0.05, 1.0), (-0.05, 1.0), (-0.13, 0.97), (-0.15, 0.9),
                    (-0.09, 0.86), (-0.1, 0.83), (-0.3, 0.8), (-0.3, 0.56), (-0.2, 0.46)])


def _layout(rng: np.random.Generator, height: int,
            width: int) -> List[Tuple[str, np.ndarray]]:
    """(label, float polygon) pairs, back to front."""
    H, W = float(height), float(width)
    horizon = H * rng.uniform(0.38, 0.52)
    vx = W * rng.uniform(0.35, 0.65)
    top_half = W * rng.uniform(0.015, 0.05)
    bottom_left, bottom_right = W * rng.uniform(0.4, 0.8, 2)
    ground = H - horizon

    def road_edges(t):
        left = (vx - top_half) + ((vx - bottom_left) - (vx - top_half)) * t
        right = (vx + top_half) + ((vx + bottom_right) - (vx + top_half)) * t
        return left, right

    objs: List[Tuple[str, np.ndarray]] = []
    rect = lambda x0, y0, x1, y1: np.array([(x0, y0), (x1, y0), (x1, y1),
                                            (x0, y1)])  # noqa
    objs.append(('sky', rect(0, 0, W, horizon + 2)))
    # buildings along the street, sometimes with a gap or a gable roof
    x = -W * rng.uniform(0, 0.1)
    while x < W:
        bw = W * rng.uniform(0.08, 0.24)
        if rng.random() < 0.15:
            x += bw * 0.6
            continue
        top = H * rng.uniform(0.03, 0.3)
        top = min(top, horizon - 0.1 * H)
        bottom = horizon + 0.06 * H
        if rng.random() < 0.3:
            peak = top - H * rng.uniform(0.03, 0.1)
            poly = np.array([(x, bottom), (x, top), (x + bw / 2, peak), (x + bw, top),
                             (x + bw, bottom)])
        else:
            poly = rect(x, top, x + bw, bottom)
        objs.append(('building', poly))
        x += bw
    # hedges and trees in front of the buildings
    if rng.random() < 0.4:
        x0, x1 = sorted(rng.uniform(-0.1, 1.1, 2) * W)
        xs = np.linspace(x0, x1, 12)
        tops = horizon - H * rng.uniform(0.02, 0.08, 12)
        poly = np.concatenate([
            np.stack([xs, tops], 1), [(x1, horizon + 0.04 * H), (x0, horizon + 0.04 * H)]
        ])
        objs.append(('vegetation', poly))
    for _ in range(int(rng.integers(0, 4))):
        cx = W * rng.uniform(0, 1)
        r = H * rng.uniform(0.06, 0.15)
        cy = horizon - H * rng.uniform(0.08, 0.2)
        trunk = max(2.0, 0.12 * r)
        objs.append(
            ('vegetation', rect(cx - trunk / 2, cy, cx + trunk / 2, horizon + 0.04 * H)))
        angles = np.linspace(0, 2 * np.pi, 16, endpoint=False) + rng.uniform(0, 1)
        radii = r * rng.uniform(0.75, 1.1, 16)
        objs.append(
            ('vegetation',
             np.stack([cx + 1.3 * radii * np.cos(angles), cy + radii * np.sin(angles)],
                      1)))
    # the ground: sidewalk, sometimes terrain beside the road, the road
    objs.append(('sidewalk', rect(0, horizon, W, H)))
    if rng.random() < 0.5:
        extra = W * rng.uniform(0.08, 0.2)
        if rng.random() < 0.5:
            poly = [(vx - top_half - 2, horizon), (vx, horizon), (vx, H),
                    (vx - bottom_left - extra, H)]
        else:
            poly = [(vx, horizon), (vx + top_half + 2, horizon),
                    (vx + bottom_right + extra, H), (vx, H)]
        objs.append(('terrain', np.array(poly)))
    objs.append(('road',
                 np.array([(vx - top_half, horizon), (vx + top_half, horizon),
                           (vx + bottom_right, H), (vx - bottom_left, H)])))
    # things standing on the ground, drawn far (high) to near (low)
    things = []
    for _ in range(int(rng.integers(1, 4))):  # poles with a sign or a light
        t = rng.uniform(0.1, 0.6)
        left, right = road_edges(t)
        x = (left - W * rng.uniform(0.01, 0.1) * t if rng.random() < 0.5 else right +
             W * rng.uniform(0.01, 0.1) * t)
        bottom = horizon + ground * t
        pw = max(2.0, 0.01 * W * (0.3 + t))
        top = max(H * 0.02, bottom - H * rng.uniform(0.3, 0.5) * (0.4 + t))
        parts = [('pole', rect(x - pw / 2, top, x + pw / 2, bottom))]
        kind = rng.random()
        if kind < 0.5:
            s = pw * rng.uniform(3, 5)
            if rng.random() < 0.5:
                sign = rect(x - s / 2, top, x + s / 2, top + s)
            else:
                a = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi / 8
                sign = np.stack([x + s / 2 * np.cos(a), top + s / 2 + s / 2 * np.sin(a)],
                                1)
            parts.append(('traffic sign', sign))
        elif kind < 0.8:
            lw = pw * rng.uniform(2, 3)
            parts.append(
                ('traffic light', rect(x - lw / 2, top, x + lw / 2, top + 2.6 * lw)))
        things.append((bottom, parts))
    for _ in range(int(rng.integers(1, 5))):  # cars on the road
        t = rng.uniform(0.12, 0.9)
        left, right = road_edges(t)
        bottom = horizon + ground * t
        cw = W * 0.32 * t * rng.uniform(0.8, 1.1)
        ch = cw * rng.uniform(0.6, 0.8)
        cx = rng.uniform(left + cw * 0.3, right -
                         cw * 0.3) if right - left > cw * 0.6 else vx
        x0, x1 = cx - cw / 2, cx + cw / 2
        poly = np.array([(x0, bottom), (x1, bottom), (x1, bottom - 0.55 * ch),
                         (x1 - 0.12 * cw, bottom - ch), (x0 + 0.12 * cw, bottom - ch),
                         (x0, bottom - 0.55 * ch)])
        things.append((bottom, [('car', poly)]))
    for _ in range(int(rng.integers(0, 4))):  # people on the sidewalk
        t = rng.uniform(0.1, 0.8)
        left, right = road_edges(t)
        bottom = horizon + ground * t
        ph = H * 0.5 * t * rng.uniform(0.85, 1.15) + 0.04 * H
        if rng.random() < 0.5:
            cx = rng.uniform(0, max(left, 1.0))
        else:
            cx = rng.uniform(min(right, W - 1), W)
        poly = _PERSON * (ph * 0.32 * rng.uniform(0.85, 1.15), -ph) + (cx, bottom)
        things.append((bottom, [('person', poly)]))
    things.sort(key=lambda item: item[0])
    for _, parts in things:
        objs.extend(parts)
    if rng.random() < 0.4:  # the bonnet of the car carrying the camera
        e1, e2 = H * rng.uniform(0.04, 0.08), H * rng.uniform(0.08, 0.14)
        objs.append(('ego vehicle',
                     np.array([(0, H), (0, H - e1), (0.2 * W, H - e2), (0.8 * W, H - e2),
                               (W, H - e1), (W, H)])))
    return objs


def draw_demo_street(rng: np.random.Generator, image_size: Tuple[int, int] = (256, 512)):
    """Draw one street scene.

    Args:
        rng: the image's generator (``image_rng(seed, split, index)`` in the dataset).
        image_size: (height, width).

    Returns:
        ``(image, objects, label_map)``: ``image`` (H, W, 3) uint8 RGB; ``objects`` the
        cityscapes json objects, back to front (dicts with ``label`` and ``polygon``, a
        list of integer [x, y]); ``label_map`` (H, W) uint8 trainIds (255: unlabelled or
        ignored) as cityscapesscripts rasterises the polygons.
    """
    height, width = image_size
    style = dict(horizon=0.0, width=width)
    sky_hue = rng.uniform(0.52, 0.64)
    overcast = rng.random() < 0.35
    style['sky_top'] = _hsv(sky_hue, 0.05 if overcast else rng.uniform(0.4, 0.8),
                            rng.uniform(0.55, 0.9))
    style['sky_low'] = _hsv(sky_hue, 0.05 if overcast else rng.uniform(0.1, 0.3),
                            rng.uniform(0.8, 1.0))
    style['cloudiness'] = float(rng.uniform(0, 25))
    style['road'] = _hsv(rng.uniform(0, 1), rng.uniform(0, 0.08), rng.uniform(0.2, 0.45))
    style['sidewalk'] = _hsv(rng.uniform(0.0, 0.12), rng.uniform(0, 0.3),
                             rng.uniform(0.5, 0.8))
    layout = _layout(rng, height, width)
    style['horizon'] = float(layout[0][1][2][1])  # bottom of the sky polygon

    canvas = np.zeros((height, width, 3), np.float32)
    label_map = np.full((height, width), 255, np.uint8)
    objects = []
    for label, points in layout:
        polygon = _int_polygon(points, width, height)
        if polygon is None:
            continue
        mask = _rasterize(polygon, width, height)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        tex = _texture(rng, label, (int(x0), int(y0), int(x1), int(y1)), style)
        canvas[ys, xs] = tex[ys - y0, xs - x0]
        label_map[mask] = CITYSCAPES_TRAIN_IDS[label]
        objects.append(dict(label=label, polygon=polygon))
        if label == 'road':  # dashed centre line, in perspective (still 'road')
            _lane_marking(rng, canvas, mask, layout, height, width)
    # global exposure and sensor noise
    gain, bias = rng.uniform(0.8, 1.15), rng.uniform(-15, 15)
    canvas = canvas * gain + bias + _noise(rng, canvas.shape, rng.uniform(1.5, 4))
    canvas = cv2.GaussianBlur(canvas, (3, 3), rng.uniform(0.3, 0.7))
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return image, objects, label_map


def _lane_marking(rng, canvas, road_mask, layout, height, width):
    road = [pts for label, pts in layout if label == 'road'][0]
    (tlx, top), (trx, _), (brx, _), (blx, _) = road
    vx, bottom_x = (tlx + trx) / 2, (blx + brx) / 2 + rng.uniform(-0.05, 0.05) * width
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.clip((yy - top) / max(height - top, 1), 0, 1)
    centre = vx + (bottom_x - vx) * t
    half = 0.5 + 0.006 * width * t
    dashes = ((np.sqrt(t) * rng.uniform(5, 9) + rng.uniform(0, 1)) % 1) < 0.5
    paint = road_mask & (np.abs(xx - centre) <= half) & dashes & (t > 0.03)
    canvas[paint] = _hsv(rng.uniform(0.1, 0.15), rng.uniform(0, 0.5),
                         rng.uniform(0.8, 0.95))
