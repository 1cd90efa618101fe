"""Cityscapes polygons -> ``*_gtFine_labelTrainIds.png``, as mmseg's converter does it.

    from mobilenet_tasks.datasets.cityscapes_convert import convert_cityscapes
    convert_cityscapes('data/cityscapes', nproc=4)

Every ``gtFine/**/*_gtFine_polygons.json`` under the root becomes a
``*_gtFine_labelTrainIds.png`` next to it, drawn by cityscapesscripts'
``json2labelImg(json, png, 'trainIds')`` (the converter of the official scripts and of
mmseg's ``tools/dataset_converters/cityscapes.py``). Label maps newer than their json are
kept. Like mmseg's converter it then writes ``<root>/{train,val,test}.txt`` (one
``<city>/<name>`` per line, for the splits present).

With ``label_ids=True`` it also writes the two maps the official gtFine zip ships next to
the polygons and cityscapesscripts' own evaluation reads (``tools/test.py
--cityscapes-eval``): ``*_gtFine_labelIds.png`` (``json2labelImg(json, png, 'ids')``) and
``*_gtFine_instanceIds.png`` (``json2instanceImg(json, png, 'ids')``), the scripts that
made the official ones. A tree made from polygons alone (the demo dataset) needs it.
"""
import json
import math
import os
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import List, Tuple, Union

__all__ = [
    'POLYGON_SUFFIX', 'LABEL_SUFFIX', 'LABEL_IDS_SUFFIX', 'INSTANCE_IDS_SUFFIX',
    'convert_cityscapes', 'convert_json_to_label'
]

POLYGON_SUFFIX = '_gtFine_polygons.json'
LABEL_SUFFIX = '_gtFine_labelTrainIds.png'
LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'  # label ids: what cityscapesscripts evaluates
INSTANCE_IDS_SUFFIX = '_gtFine_instanceIds.png'  # for its instance-level scores
SPLIT_NAMES = ('train', 'val', 'test')
_DEMO_HINT = 'python tools/dataset_converters/make_demo_cityscapes.py --out {root}'


def _label_path(json_file: Path, suffix: str = LABEL_SUFFIX) -> Path:
    return json_file.with_name(json_file.name[:-len(POLYGON_SUFFIX)] + suffix)


def _outputs(label_ids: bool) -> Tuple[str, ...]:
    return (LABEL_SUFFIX, LABEL_IDS_SUFFIX, INSTANCE_IDS_SUFFIX) if label_ids else (
        LABEL_SUFFIX, )


def _json2instance_img(json_file: str, out: str, encoding: str) -> None:
    """cityscapesscripts' ``json2instanceImg``, saved as the 16-bit PNG gtFine ships.

    ``json2instanceImg`` saves its 32-bit (mode ``I``) image as it is, which Pillow
    >= 10 refuses to write as PNG ("cannot write mode I as PNG"); the ids (label id x
    1000 + instance) fit in 16 bits.
    """
    import numpy as np
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from PIL import Image

    annotation = Annotation()
    annotation.fromJsonFile(json_file)
    ids = np.asarray(createInstanceImage(annotation, encoding))
    Image.fromarray(ids.astype(np.uint16)).save(out)


_MAX_PIXELS = 1 << 27  # 128 Mpixel: Cityscapes is 2 Mpixel; guards a mistyped size


def _check_polygon_json(json_file: Path) -> None:
    """Raise ValueError naming ``json_file`` and the fault unless it is a Cityscapes
    polygon file cityscapesscripts can draw (what it would otherwise fail on deep
    inside, or draw wrongly)."""
    def bad(fault):
        return ValueError(f'{json_file}: {fault}; not a Cityscapes polygon file '
                          '(re-download gtFine_trainvaltest.zip or fix the file)')
    try:
        data = json.loads(json_file.read_bytes())
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise bad(f'invalid JSON ({e})') from None
    except RecursionError:
        raise bad('invalid JSON (nested too deeply)') from None
    if not isinstance(data, dict):
        raise bad(f'a JSON object is expected, not a {type(data).__name__}')
    size = [data.get(key) for key in ('imgHeight', 'imgWidth')]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise bad(f'imgHeight and imgWidth must be positive integers, got {size}')
    if size[0] * size[1] > _MAX_PIXELS:
        raise bad(f'image size {size[1]}x{size[0]} is implausibly large')
    objects = data.get('objects')
    if not isinstance(objects, list):
        raise bad('"objects" must be a list')
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get('label'), str):
            raise bad(f'object {i} has no label string')
        if obj.get('deleted'):
            continue  # cityscapesscripts skips it
        polygon = obj.get('polygon')
        if not (isinstance(polygon, list) and polygon and all(
                isinstance(p, list) and len(p) == 2 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) for v in p) for p in polygon)):
            raise bad(f'object {i} ({obj["label"]!r}): polygon must be a non-empty list '
                      'of [x, y] number pairs')


def _write(json_file: Path, suffix: str) -> Path:
    """Draw one map of ``json_file`` with cityscapesscripts, atomically."""
    if suffix == INSTANCE_IDS_SUFFIX:
        draw = _json2instance_img
    else:
        from cityscapesscripts.preparation.json2labelImg import json2labelImg as draw
    out = _label_path(json_file, suffix)
    tmp = out.with_name(f'.{out.stem}.tmp-{os.getpid()}.png')
    try:
        draw(str(json_file), str(tmp), 'trainIds' if suffix == LABEL_SUFFIX else 'ids')
    except SystemExit:  # cityscapesscripts exits on an unknown label
        tmp.unlink(missing_ok=True)
        raise ValueError(f'{json_file}: cityscapesscripts could not convert it (unknown '
                         'label? see the message above)') from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        tmp.unlink(missing_ok=True)  # what _check_polygon_json did not foresee
        raise ValueError(f'{json_file}: cityscapesscripts could not convert it '
                         f'({type(e).__name__}: {e})') from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return out


def convert_json_to_label(json_file: Union[str, os.PathLike],
                          label_ids: bool = False) -> str:
    """Write the trainId label map of one polygon json (atomically); returns its path.

    With ``label_ids``, also its ``*_gtFine_labelIds.png`` and
    ``*_gtFine_instanceIds.png`` (see the module docstring).

    Raises:
        ValueError: naming the file, if it is no polygon file cityscapesscripts can
            draw (invalid JSON, no positive integer size, objects without a label or
            a polygon of [x, y] pairs, an unknown label).
    """
    json_file = Path(json_file)
    _check_polygon_json(json_file)
    return str([_write(json_file, suffix) for suffix in _outputs(label_ids)][0])


def _find(root: Path) -> Tuple[Path, List[Path]]:
    gt_dir = root / 'gtFine'
    if not gt_dir.is_dir():
        raise FileNotFoundError(
            f'no gtFine folder in the Cityscapes root {root} (looked for {gt_dir}). Get '
            'Cityscapes from https://www.cityscapes-dataset.com/downloads/ '
            '(gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, unzipped into '
            'the root), or make the small synthetic demo tree with: '
            f'{_DEMO_HINT.format(root=root)}'
        )
    files = sorted(gt_dir.rglob(f'*{POLYGON_SUFFIX}'))
    if not files:
        raise FileNotFoundError(f'no *{POLYGON_SUFFIX} under {gt_dir}: is {root} a '
                                'Cityscapes root (gtFine/{train,val,test}/<city>/...)?')
    return gt_dir, files


def _up_to_date(json_file: Path, label_ids: bool = False) -> bool:
    try:
        json_time = json_file.stat().st_mtime_ns
        return all(
            _label_path(json_file, suffix).stat().st_mtime_ns >= json_time
            for suffix in _outputs(label_ids))
    except FileNotFoundError:
        return False


def convert_cityscapes(root: Union[str, os.PathLike],
                       nproc: int = 1,
                       label_ids: bool = False) -> int:
    """Convert the polygons under ``root/gtFine`` to trainId label maps.

    Args:
        root: the Cityscapes root (holding ``gtFine`` and ``leftImg8bit``).
        nproc: worker processes (1: in this process).
        label_ids: also write ``*_gtFine_labelIds.png`` and
            ``*_gtFine_instanceIds.png`` (for cityscapesscripts' evaluation; the
            official gtFine zip has them already).

    Returns:
        int: how many polygon files were converted (ones whose maps are up to date
        are skipped).

    Raises:
        FileNotFoundError: no ``gtFine`` folder or no polygon json in it.
        ValueError: bad ``nproc``, or a json cityscapesscripts cannot convert.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f'nproc must be an integer >= 1, got {nproc!r}')
    root = Path(root).absolute()
    gt_dir, files = _find(root)
    todo = [f for f in files if not _up_to_date(f, label_ids)]
    if nproc > 1 and len(todo) > 1:
        with Pool(min(nproc, len(todo))) as pool:
            pool.map(partial(convert_json_to_label, label_ids=label_ids),
                     todo,
                     chunksize=max(1,
                                   len(todo) // (4 * nproc)))
    else:
        for f in todo:
            convert_json_to_label(f, label_ids)

    # split lists as mmseg's converter writes them: <city>/<name> per line
    for split in SPLIT_NAMES:
        split_dir = gt_dir / split
        if not split_dir.is_dir():
            continue
        names = sorted(
            str(f.relative_to(split_dir))[:-len(POLYGON_SUFFIX)]
            for f in split_dir.rglob(f'*{POLYGON_SUFFIX}'))
        text = ''.join(f'{name}\n' for name in names)
        list_file = root / f'{split}.txt'
        if not list_file.is_file() or list_file.read_text() != text:
            list_file.write_text(text)
    return len(todo)
