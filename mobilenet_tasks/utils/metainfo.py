"""Class names and colours of a model: from its checkpoint, else its config's dataset.

One answer for the inferencer (drawn results), the ONNX export (``class_names`` in the
file's metadata) and anything else that names classes.
"""
import colorsys
import warnings
from typing import List, Tuple

from mmengine.registry import DATASETS

Colour = Tuple[int, int, int]


def generate_palette(num_classes: int) -> List[Colour]:
    """``num_classes`` distinct (B, G, R) colours, the same on every call: hues spaced
    by the golden ratio, saturated and bright."""
    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75 if i % 2 else 0.95, 0.95)
        colours.append((int(b * 255), int(g * 255), int(r * 255)))
    return colours


def dataset_metainfo(cfg) -> dict:
    """The test dataset's metainfo as the dataset would hold it, without building it:
    the class's ``METAINFO`` updated by the config's ``metainfo``."""
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset') or {}
    kind = dataset.get('type')
    try:
        with DATASETS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
            cls = registry.get(kind) if isinstance(kind, str) else kind
    except Exception:  # noqa: BLE001 (an unregistered or unimportable dataset)
        cls = None
    info = dict(getattr(cls, 'METAINFO', None) or {})
    override = dict(dataset.get('metainfo') or {})
    if 'classes' in override and 'palette' not in override:
        info.pop('palette', None)  # the class's palette is for its own classes
    info.update(override)
    return info


def classes_and_palette(cfg, meta: dict, num_classes: int):
    """Class names (checkpoint's ``dataset_meta``, else the config's dataset, else
    ``class_<i>``) and a BGR palette (theirs, else generated)."""
    sources = [('the checkpoint', {k.lower(): v for k, v in
                                   (meta.get('dataset_meta') or {}).items()}),
               ('the config', dataset_metainfo(cfg))]
    classes, palette = None, None
    for where, info in sources:
        names = info.get('classes')
        if names is None:
            continue
        if len(names) == num_classes:
            classes, palette = tuple(str(n) for n in names), info.get('palette')
            break
        warnings.warn(f'{where} names {len(names)} classes but the model predicts '
                      f'{num_classes}; ignoring its names', stacklevel=3)
    if classes is None:
        classes = tuple(f'class_{i}' for i in range(num_classes))
    if isinstance(palette, (list, tuple)) and len(palette) >= num_classes:
        palette = [tuple(int(c) for c in rgb[::-1]) for rgb in palette[:num_classes]]
    else:  # none, 'random', or too short
        palette = generate_palette(num_classes)
    return classes, palette
