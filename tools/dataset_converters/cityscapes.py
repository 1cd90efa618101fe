"""Convert Cityscapes polygons to the trainId label maps mmseg reads.

    python tools/dataset_converters/cityscapes.py CITYSCAPES_ROOT [--nproc N]

Every ``CITYSCAPES_ROOT/gtFine/**/*_gtFine_polygons.json`` becomes a
``*_gtFine_labelTrainIds.png`` next to it (cityscapesscripts' ``json2labelImg(...,
'trainIds')``, as in mmseg's converter); label maps newer than their json are kept. Writes
the split lists ``CITYSCAPES_ROOT/{train,val,test}.txt`` like mmseg's converter. Works on
the real dataset and on the demo tree of ``make_demo_cityscapes.py``.
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
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        written = convert_cityscapes(args.cityscapes_path, nproc=args.nproc)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    root = Path(args.cityscapes_path).absolute()
    print(
        f'cityscapes: wrote {written} label maps in {seconds:.1f} s under '
        f'{root / "gtFine"} '
        '(up-to-date ones kept); split lists in ' +
        ', '.join(str(p) for p in sorted(root.glob('*.txt'))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
