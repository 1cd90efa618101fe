"""What the inferencer returns: plain numpy results, one per input image."""
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(eq=False)  # numpy fields: compare the arrays yourself
class DetectionResult:
    """Boxes found in one image.

    Attributes:
        boxes (np.ndarray): ``(N, 4)`` float32, ``x1, y1, x2, y2`` in the input image's
            pixels.
        scores (np.ndarray): ``(N,)`` float32, descending, all at least the
            inferencer's score threshold.
        labels (np.ndarray): ``(N,)`` int64, indices into ``class_names``.
        class_names (tuple): Names of all the model's classes.
        source (str, optional): The file the image came from, or ``'array_<i>'``
            for the i-th array input; None from :meth:`Inferencer.predict`.
    """
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple
    source: Optional[str] = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_dict(self) -> dict:
        """JSON-able: ``boxes`` (list of ``[x1, y1, x2, y2]``), ``scores``,
        ``labels`` and ``names`` (the class name of each box)."""
        return {
            'boxes': self.boxes.astype(float).tolist(),
            'scores': self.scores.astype(float).tolist(),
            'labels': self.labels.astype(int).tolist(),
            'names': [self.class_names[i] for i in self.labels.tolist()],
        }


@dataclass(eq=False)  # numpy fields: compare the arrays yourself
class SegmentationResult:
    """The class of every pixel of one image.

    Attributes:
        label_map (np.ndarray): ``(H, W)`` uint8 (int32 for more than 255 classes),
            the class index of each pixel, at the input image's size.
        class_names (tuple): Names of all the model's classes.
        source (str, optional): As :attr:`DetectionResult.source`.
    """
    label_map: np.ndarray
    class_names: tuple
    source: Optional[str] = None

    def areas(self) -> dict:
        """``{class name: pixel count}`` of the classes present, in class order."""
        counts = np.bincount(self.label_map.ravel(), minlength=len(self.class_names))
        return {(self.class_names[i] if i < len(self.class_names) else str(i)): int(n)
                for i, n in enumerate(counts) if n}

    def to_dict(self) -> dict:
        """JSON-able and small: ``height``, ``width`` and ``areas`` (pixel count of
        each class present); the map itself is not included."""
        height, width = self.label_map.shape
        return {'height': int(height), 'width': int(width), 'areas': self.areas()}
