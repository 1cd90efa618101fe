"""Write the built-in demo detection dataset (synthetic shapes, COCO format).

    python tools/dataset_converters/make_demo_coco.py [--out data/demo_coco]
        [--num-train 400] [--num-val 100] [--size 160] [--seed 0]

Deterministic: the same arguments give the same images and byte-identical json. A
dataset already in --out made with the same arguments is reused (see --force).
"""
import argparse
import importlib.util
import json
import shutil
import sys
import time
import types
from pathlib import Path


def _load_demo_coco():
    """The generator module, without running ``mobilenet_tasks/__init__.py``.

    demo_coco needs only numpy and OpenCV, while importing the package imports torch,
    mmdet and the models (about 10 s on a small CPU). The file is loaded as a submodule
    of a stand-in package (so its relative import of ``generated`` works); falls back to
    the package import when it is not next to this script's checkout.
    """
    folder = Path(__file__).resolve().parents[2] / 'mobilenet_tasks' / 'datasets'
    if not (folder / 'demo_coco.py').is_file():
        from mobilenet_tasks.datasets import demo_coco
        return demo_coco
    pkg_name = '_mobilenet_tasks_datasets'
    if pkg_name not in sys.modules:
        pkg = types.ModuleType(pkg_name)
        pkg.__path__ = [str(folder)]
        sys.modules[pkg_name] = pkg
    full = f'{pkg_name}.demo_coco'
    if full not in sys.modules:
        spec = importlib.util.spec_from_file_location(full, folder / 'demo_coco.py')
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
    return sys.modules[full]


demo_coco = _load_demo_coco()
MANIFEST_NAME, make_demo_coco = demo_coco.MANIFEST_NAME, demo_coco.make_demo_coco


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write the demo detection dataset (synthetic shapes, COCO format)')
    parser.add_argument('--out', default='data/demo_coco', help='output directory')
    parser.add_argument('--num-train', type=int, default=400, help='training images')
    parser.add_argument('--num-val', type=int, default=100, help='validation images')
    parser.add_argument('--size', type=int, default=160, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='random seed (>= 0)')
    parser.add_argument('--min-objects', type=int, default=1, help='objects per image, min')
    parser.add_argument('--max-objects', type=int, default=4, help='objects per image, max')
    parser.add_argument('--force', action='store_true',
                        help='regenerate even if --out already holds this dataset')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if args.force and (out / MANIFEST_NAME).is_file():
        shutil.rmtree(out)
    start = time.perf_counter()
    try:
        summary = make_demo_coco(out, num_train=args.num_train, num_val=args.num_val,
                                 image_size=args.size, seed=args.seed,
                                 min_objects=args.min_objects,
                                 max_objects=args.max_objects)
    except (ValueError, FileExistsError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    verb = 'reused' if summary['reused'] else f'wrote in {seconds:.1f} s'
    print(f'demo_coco {verb}: {summary["out_dir"]}')
    for split, info in summary['splits'].items():
        counts = ', '.join(f'{k} {v}' for k, v in info['counts'].items())
        print(f'  {split}: {info["num_images"]} images, {info["num_objects"]} objects '
              f'({counts})')
        print(f'    images      {info["img_dir"]}')
        print(f'    annotations {info["ann_file"]}')
    print(f'  manifest {summary["manifest"]}')
    print(f'  arguments {json.dumps(summary["args"])}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
