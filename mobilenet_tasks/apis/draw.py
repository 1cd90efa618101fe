"""Drawing results on BGR images with OpenCV and numpy only (fast enough for video).

Detections: a box in its class colour and a ``name score`` label on a filled box of
that colour, in black or white, whichever reads better on it (mmdet's
``DetLocalVisualizer`` draws the same with matplotlib). Segmentation: the label map's
class colours blended over the image, and each class named at the inner-most point of
its thickest region (mmseg's ``SegLocalVisualizer`` with ``with_labels``).
"""
from typing import Sequence, Tuple

import cv2
import numpy as np

from mobilenet_tasks.utils.metainfo import Colour

from .results import DetectionResult, SegmentationResult

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_colour(colour: Colour) -> Colour:
    """Black on light colours, white on dark ones (BT.601 luma of a BGR colour)."""
    b, g, r = colour
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: Colour,
           font_scale: float, thickness: int, above: bool = True) -> None:
    """A filled label box with ``text``, its left edge at ``x``; ending at ``y`` (above)
    or starting there (below), moved inside the image when it would leave it."""
    (tw, th), baseline = cv2.getTextSize(text, FONT, font_scale, thickness)
    pad = max(1, thickness)
    bw, bh = tw + 2 * pad, th + baseline + 2 * pad
    h, w = image.shape[:2]
    top = y - bh if above else y
    if top < 0:
        top = y if above else 0
    top = min(top, max(h - bh, 0))
    left = min(max(x, 0), max(w - bw, 0))
    cv2.rectangle(image, (left, top), (left + bw - 1, top + bh - 1), colour, -1)
    cv2.putText(image, text, (left + pad, top + pad + th), FONT, font_scale,
                _text_colour(colour), thickness, cv2.LINE_AA)


def _font(height: int, width: int) -> Tuple[float, int]:
    """Font scale and thickness for an image: readable at 160 px, not huge at 4k."""
    scale = max(0.35, min(height, width) / 700)
    return scale, max(1, int(round(scale * 1.6)))


def draw_detections(image: np.ndarray, result: DetectionResult,
                    palette: Sequence[Colour]) -> np.ndarray:
    """Boxes and ``name score`` labels on a copy of ``image``.

    Args:
        image (np.ndarray): BGR ``uint8`` ``HxWx3``.
        result (DetectionResult): Boxes in ``image``'s pixels.
        palette (Sequence[tuple]): (B, G, R) colour of each class.

    Returns:
        np.ndarray: A new BGR ``uint8`` image of the same size.
    """
    out = image.copy()
    h, w = out.shape[:2]
    line = max(1, int(round((h + w) / 600)))
    font_scale, thickness = _font(h, w)
    boxes = np.round(result.boxes).astype(np.int64)
    # lowest score first, so the best boxes and labels end up on top
    for i in range(len(result.scores) - 1, -1, -1):
        label = int(result.labels[i])
        colour = tuple(int(c) for c in palette[label % len(palette)])
        x1, y1, x2, y2 = boxes[i].tolist()
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, line)  # crisp edges
        name = (result.class_names[label] if label < len(result.class_names) else
                f'class {label}')
        _label(out, f'{name} {result.scores[i]:.2f}', x1, y1, colour, font_scale,
               thickness)
    return out


def draw_segmentation(image: np.ndarray, result: SegmentationResult,
                      palette: Sequence[Colour], alpha: float = 0.5,
                      with_labels: bool = True) -> np.ndarray:
    """The label map's colours blended over a copy of ``image``.

    Args:
        image (np.ndarray): BGR ``uint8`` ``HxWx3`` of the label map's size.
        result (SegmentationResult): The label map.
        palette (Sequence[tuple]): (B, G, R) colour of each class.
        alpha (float): Weight of the colours (0: the image, 1: only colours).
        with_labels (bool): Name each class present at the inner-most point of its
            thickest region.

    Returns:
        np.ndarray: A new BGR ``uint8`` image of the same size.
    """
    label_map = result.label_map
    if label_map.shape != image.shape[:2]:
        raise ValueError(f'the label map is {label_map.shape[1]}x{label_map.shape[0]} '
                         f'but the image {image.shape[1]}x{image.shape[0]}: draw a '
                         'result on the image it was predicted from')
    lut = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    valid = None
    if label_map.size and int(label_map.max()) >= len(lut):  # e.g. 255 = ignore
        valid = label_map < len(lut)
        colours = lut[np.where(valid, label_map, 0)]
    else:
        colours = lut[label_map]
    out = cv2.addWeighted(image, 1.0 - alpha, colours, alpha, 0.0)
    if valid is not None:
        out[~valid] = image[~valid]
    if with_labels:
        _name_regions(out, label_map, result.class_names, lut)
    return out


def _name_regions(out: np.ndarray, label_map: np.ndarray, class_names: Sequence[str],
                  lut: np.ndarray) -> None:
    """Write each present class's name where its regions are thickest (on a
    subsampled map: a few ms for a 1024x2048 image)."""
    h, w = label_map.shape
    step = max(1, min(h, w) // 128)
    small = label_map[::step, ::step]
    font_scale, thickness = _font(h, w)
    counts = np.bincount(small.ravel())
    for label in np.flatnonzero(counts):
        if label >= len(lut):
            continue
        mask = np.pad((small == label).astype(np.uint8), 1)  # the border is outside
        dist = cv2.distanceTransform(mask, cv2.DIST_L2, 3)
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        name = class_names[label] if label < len(class_names) else str(label)
        (tw, th), baseline = cv2.getTextSize(name, FONT, font_scale, thickness)
        cx, cy = (x - 1) * step, (y - 1) * step
        _label(out, name, cx - tw // 2, cy - (th + baseline) // 2, tuple(
            int(c) for c in lut[label]), font_scale, thickness, above=False)
