"""Write the built-in demo segmentation dataset (synthetic streets, Cityscapes layout).

    python tools/dataset_converters/make_demo_cityscapes.py [--out data/demo_cityscapes]
        [--num-train 60] [--num-val 20] [--height 256] [--width 512] [--seed 0]
        [--nproc 1] [--force]

Writes ``leftImg8bit/`` images and ``gtFine/`` polygon json, then runs the Cityscapes
converter (``tools/dataset_converters/cityscapes.py``) on it for the
``*_gtFine_labelTrainIds.png`` maps. Deterministic: the same arguments give the same
files. A dataset already in --out made with the same arguments is reused (see --force).
"""
import argparse
import importlib.util
import json
import shutil
import sys
import time
import types
from pathlib import Path


def _load_modules():
    """demo_cityscapes and cityscapes_convert, without running the package __init__.

    They need only numpy, OpenCV, PIL and cityscapesscripts, while importing the package
    imports torch, mmdet and the models. The files are loaded as submodules of a stand-in
    package (so demo_cityscapes' relative import of demo_coco works); falls back to the
    package import when they are not next to this script's checkout.
    """
    folder = Path(__file__).resolve().parents[2] / 'mobilenet_tasks' / 'datasets'
    if not (folder / 'demo_cityscapes.py').is_file():
        from mobilenet_tasks.datasets import cityscapes_convert, demo_cityscapes
        return demo_cityscapes, cityscapes_convert
    pkg_name = '_mobilenet_tasks_datasets'
    if pkg_name not in sys.modules:
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [str(folder)]
        sys.modules[pkg_name] = pkg
    modules = []
    for name in ('demo_cityscapes', 'cityscapes_convert'):
        full = f'{pkg_name}.{name}'
        if full not in sys.modules:
            spec = importlib.util.spec_from_file_location(full, folder / f'{name}.py')
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            spec.loader.exec_module(module)
        modules.append(sys.modules[full])
    return tuple(modules)


demo_cityscapes, cityscapes_convert = _load_modules()
MANIFEST_NAME = demo_cityscapes.CITYSCAPES_MANIFEST_NAME


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write the demo segmentation dataset (synthetic streets, Cityscapes '
        'layout) and convert its polygons to labelTrainIds')
    parser.add_argument('--out', default='data/demo_cityscapes', help='output directory')
    parser.add_argument('--num-train', type=int, default=60, help='training images')
    parser.add_argument('--num-val', type=int, default=20, help='validation images')
    parser.add_argument('--height', type=int, default=256, help='image height')
    parser.add_argument('--width', type=int, default=512, help='image width')
    parser.add_argument('--seed', type=int, default=0, help='random seed (>= 0)')
    parser.add_argument('--nproc', type=int, default=1, help='converter processes')
    parser.add_argument('--force',
                        action='store_true',
                        help='regenerate even if --out already holds this dataset')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if args.force and (out / MANIFEST_NAME).is_file():
        shutil.rmtree(out)
    start = time.perf_counter()
    try:
        summary = demo_cityscapes.make_demo_cityscapes(out,
                                                       num_train=args.num_train,
                                                       num_val=args.num_val,
                                                       image_size=(args.height,
                                                                   args.width),
                                                       seed=args.seed)
        generated = time.perf_counter()
        written = cityscapes_convert.convert_cityscapes(out, nproc=args.nproc)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    end = time.perf_counter()
    verb = 'reused' if summary['reused'] else f'wrote in {generated - start:.1f} s'
    print(f'demo_cityscapes {verb}: {summary["out_dir"]}')
    print(
        f'  converted {written} polygon files to labelTrainIds in {end - generated:.1f} s'
    )
    for split, info in summary['splits'].items():
        objects = ', '.join(f'{k} {v}' for k, v in info['objects'].items() if v)
        print(f'  {split}: {info["num_images"]} images ({objects})')
        print(f'    images {info["img_dir"]}')
        print(f'    labels {info["ann_dir"]}')
    print(f'  manifest {summary["manifest"]}')
    print(f'  arguments {json.dumps(summary["args"])}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
