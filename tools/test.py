"""Test (evaluate) a checkpoint with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR]

Metrics are the config's test evaluator (COCO bbox mAP with pycocotools for detection,
mIoU for segmentation); they are printed and written to the work dir.
"""
import argparse
import json
import os.path as osp

from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.runner import Runner

import mobilenet_tasks  # noqa: F401  (registries; safe checkpoint loading)
from mobilenet_tasks.datasets.checks import DatasetNotFoundError, check_data_files
from mobilenet_tasks.engine import (add_common_arguments, apply_common_options,
                                    parse_args_with_local_rank)


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save drawn predictions to this dir')
    add_common_arguments(parser)
    return parse_args_with_local_rank(parser)


def enable_drawing(cfg: Config, show_dir: str) -> None:
    """Turn on the config's visualization hook (mmdet's or mmseg's) to save drawings."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit('--show-dir needs a `visualization` hook in default_hooks '
                         '(DetVisualizationHook or SegVisualizationHook)')
    hook['draw'] = True
    if 'Det' in str(hook.get('type', '')):
        hook['test_out_dir'] = show_dir
    else:
        cfg.visualizer['save_dir'] = show_dir


def main():
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint} does not exist')
    cfg = apply_common_options(Config.fromfile(args.config), args, args.config)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        enable_drawing(cfg, args.show_dir)
    try:
        check_data_files(cfg, loaders=('test_dataloader', ))
    except DatasetNotFoundError as error:
        raise SystemExit(f'error: {error}')
    runner = Runner.from_cfg(cfg)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit(f'--out must be a .pkl file, got {args.out}')
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    out = osp.join(cfg.work_dir, 'test_metrics.json')
    with open(out, 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                       metrics={k: float(v) if isinstance(v, (int, float)) else str(v)
                                for k, v in metrics.items()}), f, indent=2)
    print('metrics:', metrics)
    print(f'metrics written to {out}')


if __name__ == '__main__':
    main()
