"""Convert Cityscapes polygons to the trainId label maps mmseg reads.

    python tools/dataset_converters/cityscapes.py CITYSCAPES_ROOT [--nproc N]
        [--label-ids]

Every ``CITYSCAPES_ROOT/gtFine/**/*_gtFine_polygons.json`` becomes a
``*_gtFine_labelTrainIds.png`` next to it (cityscapesscripts' ``json2labelImg(...,
'trainIds')``, as in mmseg's converter); label maps newer than their json are kept. Writes
the split lists ``CITYSCAPES_ROOT/{train,val,test}.txt`` like mmseg's converter. Works on
the real dataset and on the demo tree of ``make_demo_cityscapes.py``.

``--label-ids`` also writes ``*_gtFine_labelIds.png`` and ``*_gtFine_instanceIds.png``:
the official gtFine zip has them; a tree made from polygons alone, like the demo, needs
them for cityscapesscripts' evaluation (``tools/test.py --cityscapes-eval``).
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path


def _load_convert():
    """The converter module, without importing the package (torch, mmdet, models)."""
    path = (Path(__file__).resolve().parents[2] / 'mobilenet_tasks' / 'datasets' /
            'cityscapes_convert.py')
    if not path.is_file():
        from mobilenet_tasks.datasets import cityscapes_convert
        return cityscapes_convert
    spec = importlib.util.spec_from_file_location('_mobilenet_tasks_cityscapes_convert',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # picklable worker function for --nproc > 1
    spec.loader.exec_module(module)
    return module


cityscapes_convert = _load_convert()
convert_cityscapes = cityscapes_convert.convert_cityscapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert Cityscapes gtFine polygons to *_gtFine_labelTrainIds.png')
    parser.add_argument('cityscapes_path', help='Cityscapes root (holds gtFine/)')
    parser.add_argument('--nproc', default=1, type=int, help='number of processes')
    parser.add_argument(
        '--label-ids', action='store_true',
        help='also write *_gtFine_labelIds.png and *_gtFine_instanceIds.png, which '
        "cityscapesscripts' evaluation reads (tools/test.py --cityscapes-eval)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        written = convert_cityscapes(args.cityscapes_path, nproc=args.nproc,
                                     label_ids=args.label_ids)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    root = Path(args.cityscapes_path).absolute()
    maps = (f'the labelTrainIds, labelIds and instanceIds maps of {written} polygon '
            'files' if args.label_ids else f'{written} label maps')
    print(
        f'cityscapes: wrote {maps} in {seconds:.1f} s under '
        f'{root / "gtFine"} '
        '(up-to-date ones kept); split lists in ' +
        ', '.join(str(p) for p in sorted(root.glob('*.txt'))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
