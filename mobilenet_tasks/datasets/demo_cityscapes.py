"""A small synthetic street-scene dataset in the Cityscapes layout, made reproducibly.

Each image is a street seen from a car: sky on top, a row of buildings (with windows,
sometimes gaps showing the sky), trees and hedges in front of them, a sidewalk, a road
in perspective towards a vanishing point (sometimes with a strip of terrain beside it),
poles carrying traffic signs or lights, cars on the road and people on the sidewalk, and
sometimes the bonnet of the ego vehicle at the bottom. Every region is a polygon labelled
with a real Cityscapes class (``DEMO_CITYSCAPES_LABELS``: 11 of the 19 train classes plus
'ego vehicle', which is ignored), drawn back to front; colours, textures, sizes and the
layout vary per image.

    from mobilenet_tasks.datasets import make_demo_cityscapes
    from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
    make_demo_cityscapes('data/demo_cityscapes')   # seconds; reused when already there
    convert_cityscapes('data/demo_cityscapes')     # *_gtFine_labelTrainIds.png

writes, like the real dataset, ``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png``
and ``gtFine/{train,val}/<city>/<name>_gtFine_polygons.json`` (cityscapesscripts' json:
``imgHeight``, ``imgWidth``, ``objects`` with ``label`` and ``polygon``), plus a manifest
``demo_cityscapes.json``. The converter (the one users run on real Cityscapes) turns the
polygons into label maps; mmseg's ``CityscapesDataset`` then reads the tree.

The image is painted with the very polygons of the json, rasterised the way
cityscapesscripts rasterises them (PIL), so image and label map agree pixel for pixel.

Determinism: image ``index`` of split ``split`` is drawn from
``numpy.random.default_rng([seed, split_code, index])`` alone (``image_rng``), so the same
arguments give the same PNG bytes and byte-identical json, and the val set does not depend
on ``num_train``.
"""
import json
import os
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import cv2
import numpy as np

from .demo_coco import _check_int, image_rng
from .demo_street import (CITYSCAPES_TRAIN_IDS, DEMO_CITYSCAPES_LABELS,
                          draw_demo_street)
from .generated import publish_generated

__all__ = [
    'DEMO_CITYSCAPES_LABELS', 'DEMO_CITYSCAPES_VERSION', 'CITYSCAPES_MANIFEST_NAME',
    'CITYSCAPES_TRAIN_IDS', 'draw_demo_street', 'image_name', 'make_demo_cityscapes'
]

# Bump when the drawing or the layout changes: a manifest of another version is not
# reused.
DEMO_CITYSCAPES_VERSION = 1
CITYSCAPES_MANIFEST_NAME = 'demo_cityscapes.json'
SPLITS = ('train', 'val')
# real Cityscapes cities (train ones for train, val ones for val)
CITIES = {
    'train': ('aachen', 'bochum', 'bremen'),
    'val': ('frankfurt', 'lindau', 'munster')
}
_MIN_SIDE = 64
_MAX_SIDE = 4096


# ---------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------
def _check_args(num_train, num_val, image_size, seed) -> Dict:
    if (isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence)
            or len(image_size) != 2):
        raise ValueError(f'image_size must be (height, width), got {image_size!r}')
    height = _check_int('image height', image_size[0], _MIN_SIDE, _MAX_SIDE)
    width = _check_int('image width', image_size[1], _MIN_SIDE, _MAX_SIDE)
    return dict(num_train=_check_int('num_train', num_train, 1),
                num_val=_check_int('num_val', num_val, 1),
                image_size=[height, width],
                seed=_check_int('seed', seed, 0))


def image_name(split: str, index: int) -> Tuple[str, str]:
    """(city, base name) of image ``index`` of ``split``.

    E.g. ('aachen', 'aachen_000000_000019').
    """
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f'{city}_{index // len(cities):06d}_000019'


def _write_split(root: Path, split: str, num: int, args: Dict) -> Dict:
    height, width = args['image_size']
    objects_per_label = {label: 0 for label in DEMO_CITYSCAPES_LABELS}
    pixels = np.zeros(256, np.int64)
    for index in range(num):
        rng = image_rng(args['seed'], split, index)
        image, objects, label_map = draw_demo_street(rng, (height, width))
        city, name = image_name(split, index)
        img_dir = root / 'leftImg8bit' / split / city
        gt_dir = root / 'gtFine' / split / city
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode('.png', image[..., ::-1])
        if not ok:
            raise RuntimeError(f'could not encode {split}/{city}/{name}')
        (img_dir / f'{name}_leftImg8bit.png').write_bytes(data.tobytes())
        ann = dict(
            imgHeight=height,
            imgWidth=width,
            objects=[dict(label=o['label'], polygon=o['polygon']) for o in objects])
        (gt_dir / f'{name}_gtFine_polygons.json').write_text(
            json.dumps(ann, separators=(',', ':')))
        for o in objects:
            objects_per_label[o['label']] += 1
        pixels += np.bincount(label_map.ravel(), minlength=256)
    train_id_pixels = {
        str(i): int(pixels[i])
        for i in sorted(set(CITYSCAPES_TRAIN_IDS.values()))
    }
    return dict(num_images=num,
                objects=objects_per_label,
                train_id_pixels=train_id_pixels)


def _files_complete(out_dir: Path, args: Dict) -> bool:
    for split in SPLITS:
        num = args[f'num_{split}']
        for kind, suffix in (('leftImg8bit', '_leftImg8bit.png'),
                             ('gtFine', '_gtFine_polygons.json')):
            found = len(list((out_dir / kind / split).glob(f'*/*{suffix}')))
            if found != num:
                return False
    return True


def _summary(out_dir: Path, manifest: Dict, reused: bool) -> Dict:
    splits = {}
    for split in SPLITS:
        info = dict(manifest['splits'][split])
        info['img_dir'] = str(out_dir / 'leftImg8bit' / split)
        info['ann_dir'] = str(out_dir / 'gtFine' / split)
        splits[split] = info
    return dict(out_dir=str(out_dir),
                manifest=str(out_dir / CITYSCAPES_MANIFEST_NAME),
                labels=DEMO_CITYSCAPES_LABELS,
                args=dict(manifest['args']),
                reused=reused,
                splits=splits)


def make_demo_cityscapes(out_dir: Union[str, os.PathLike],
                         num_train: int = 60,
                         num_val: int = 20,
                         image_size: Tuple[int, int] = (256, 512),
                         seed: int = 0) -> Dict:
    """Write the demo street scenes into ``out_dir`` (Cityscapes layout) unless there.

    Layout: ``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png``,
    ``gtFine/{train,val}/<city>/<name>_gtFine_polygons.json`` and the manifest
    ``demo_cityscapes.json`` (arguments, version, object and pixel counts). Run
    ``convert_cityscapes(out_dir)`` (``mobilenet_tasks.datasets.cityscapes_convert``)
    afterwards for the ``*_gtFine_labelTrainIds.png`` maps mmseg reads.

    If ``out_dir`` holds a complete dataset made with the same arguments and version it is
    reused (label maps already converted stay). Otherwise it is written into a temporary
    directory next to ``out_dir`` and renamed into place, replacing a previous demo
    dataset; a non-empty ``out_dir`` without a manifest is not touched (FileExistsError).

    Returns:
        dict: ``out_dir``, ``manifest``, ``labels``, ``args``, ``reused`` and ``splits``
        (per split: ``img_dir``, ``ann_dir``, ``num_images``, ``objects`` per label and
        ``train_id_pixels``, pixels per trainId as str).
    """
    args = _check_args(num_train, num_val, image_size, seed)
    out_dir = Path(out_dir).absolute()

    def write(tmp: Path) -> Dict:
        splits = {
            split: _write_split(tmp, split, args[f'num_{split}'], args)
            for split in SPLITS
        }
        return dict(generator='mobilenet_tasks.datasets.demo_cityscapes',
                    labels=list(DEMO_CITYSCAPES_LABELS),
                    cities={s: list(CITIES[s]) for s in SPLITS}, splits=splits)

    manifest, reused = publish_generated(
        out_dir, CITYSCAPES_MANIFEST_NAME, DEMO_CITYSCAPES_VERSION, args,
        lambda d: _files_complete(d, args), write)
    return _summary(out_dir, manifest, reused=reused)
