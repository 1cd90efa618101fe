"""Train a model with mmengine's Runner: ours, or any mmdet/mmseg/mmpretrain config.

    python tools/train.py configs/ssdlite_v3_large_coco.py [--work-dir DIR] [--resume]
"""
import argparse

from mmengine.config import Config
from mmengine.runner import Runner

import mobilenet_tasks  # noqa: F401  (registries; safe checkpoint loading)
from mobilenet_tasks.datasets.checks import DatasetNotFoundError, check_data_files
from mobilenet_tasks.engine import (add_common_arguments, apply_common_options,
                                    parse_args_with_local_rank)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints '
                        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size '
                        '(auto_scale_lr.base_batch_size in the config)')
    add_common_arguments(parser)
    return parse_args_with_local_rank(parser)


def main():
    args = parse_args()
    cfg = apply_common_options(Config.fromfile(args.config), args, args.config)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit(
                f'--auto-scale-lr: {args.config} has no auto_scale_lr.base_batch_size; '
                'add auto_scale_lr = dict(enable=False, base_batch_size=N) to it')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    try:
        check_data_files(cfg)
    except DatasetNotFoundError as error:
        raise SystemExit(f'error: {error}')
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
