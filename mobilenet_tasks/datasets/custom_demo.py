"""Small datasets of their own (classes, image sizes and formats that are not the
demo's) for following the README's fine-tuning section: its test
(tests/test_tools/test_finetune.py), the pretrained-start tests and the fine-tuning
guidance measurements (tools/misc/finetune_guidance.py).

- :func:`make_two_class_coco`: a COCO-format detection set, 2 classes ("disc",
  "block": the demo's circles and squares renamed, its other shapes' boxes removed).
- :func:`make_three_class_masks`: an mmseg ``BaseSegDataset`` tree, JPEG images and
  PNG label maps (0 background, 1 disc, 2 bar) on noise.
"""
import json
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from .demo_coco import make_demo_coco

TWO_CLASSES = ('disc', 'block')
THREE_CLASSES = ('background', 'disc', 'bar')


def make_two_class_coco(root, num_train: int = 48, num_val: int = 16,
                        image_size: int = 96, seed: int = 11) -> Path:
    """Write the two-class COCO set into ``root`` (``train/``, ``val/``,
    ``annotations/instances_{train,val}.json``); ``root``."""
    root = Path(root)
    make_demo_coco(root, num_train=num_train, num_val=num_val, image_size=image_size,
                   seed=seed)
    names = dict(enumerate(TWO_CLASSES, start=1))  # the demo's circle and square ids
    for split in ('train', 'val'):
        path = root / 'annotations' / f'instances_{split}.json'
        data = json.loads(path.read_text())
        data['categories'] = [dict(id=i, name=n) for i, n in names.items()]
        data['annotations'] = [a for a in data['annotations']
                               if a['category_id'] in names]
        path.write_text(json.dumps(data))
    return root


def make_three_class_masks(root, num_train: int = 24, num_val: int = 8,
                           size: Tuple[int, int] = (96, 128), seed: int = 5) -> Path:
    """Write the three-class segmentation tree into ``root``
    (``images/{train,val}/NNN.jpg``, ``labels/{train,val}/NNN.png``, ``size`` = (h, w));
    ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    for split, num in (('train', num_train), ('val', num_val)):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'labels' / split).mkdir(parents=True, exist_ok=True)
        for i in range(num):
            image = rng.integers(60, 120, (h, w, 3)).astype(np.uint8)
            label = np.zeros((h, w), np.uint8)
            for _ in range(2):
                cx, cy = rng.integers(20, w - 20), rng.integers(20, h - 20)
                cv2.circle(label, (int(cx), int(cy)), int(rng.integers(8, 18)), 1, -1)
            x, y = rng.integers(0, w - 40), rng.integers(0, h - 12)
            cv2.rectangle(label, (int(x), int(y)), (int(x) + 40, int(y) + 10), 2, -1)
            image[label == 1] = (40, 40, 220)
            image[label == 2] = (220, 200, 40)
            cv2.imwrite(str(root / 'images' / split / f'{i:03d}.jpg'), image)
            cv2.imwrite(str(root / 'labels' / split / f'{i:03d}.png'), label)
    return root
