"""Train a model with mmengine's Runner: ours, or any mmdet/mmseg/mmpretrain config.

    python tools/train.py configs/ssdlite_v3_large_coco.py [--work-dir DIR] [--resume]
    python tools/train.py CONFIG --qat --load-from FLOAT.pth [--qat-iters N]

``--qat`` fine-tunes a trained float model with simulated int8 quantization
(``mobilenet_tasks/deployment/qat_config.py`` says what it changes in the config); its
checkpoint exports to int8 files as a float one does (``tools/deployment/
export_executorch.py``, ``export_onnx.py``) and runs in ``tools/test.py``.

Every run saves its checkpoints atomically (a crash while saving leaves the previous
checkpoint as the one ``--resume`` picks) and with its random generator states, so a
run killed at any point and resumed ends as if it had never stopped (with
``randomness=dict(seed=..., deterministic=True)``); see
``mobilenet_tasks/engine/checkpointing.py``.
"""
import argparse
import logging
import os.path as osp

# Only the argument parsing is imported here: torch, mmengine's Runner, mmdet and the
# models load in main() once the arguments are parsed, so --help and an argument error
# answer at once.
from mobilenet_tasks.utils.arguments import (add_common_arguments,
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
    parser.add_argument('--load-from', help='start from these weights (the config\'s '
                        'load_from); with --qat: the trained float checkpoint')
    parser.add_argument('--qat', action='store_true',
                        help='quantization-aware fine-tune of the float model of '
                        '--load-from (work dir default: work_dirs/<config name>_qat)')
    parser.add_argument('--qat-iters', type=int, default=None,
                        help='QAT iterations (default: the config\'s qat.iters, else '
                        '10%% of its float schedule)')
    add_common_arguments(parser)
    args = parse_args_with_local_rank(parser)
    if args.qat_iters is not None and not args.qat:
        parser.error('--qat-iters needs --qat')
    if args.qat_iters is not None and args.qat_iters < 1:
        parser.error(f'--qat-iters must be positive, got {args.qat_iters}')
    return args


def check_resume_checkpoint(cfg):
    """Stop with a clear message if the checkpoint ``--resume`` would load is missing or
    incomplete (e.g. cut short by a crash under another tool), instead of a traceback
    from deep inside torch.load; the path it will load (None: nothing to resume)."""
    if not cfg.get('resume'):
        return None
    path = cfg.get('load_from')
    if path is None:
        last = osp.join(cfg.work_dir, 'last_checkpoint')
        if not osp.isfile(last):  # nothing saved yet: mmengine trains from the start
            return None
        with open(last) as f:
            path = f.read().strip()
        source = f'{last} names {path}'
    else:
        source = f'--resume {path}'
    if '://' in path:  # remote checkpoints are not checked here
        return None
    from mobilenet_tasks.engine import check_checkpoint_file
    problem = check_checkpoint_file(path)
    if problem is not None:
        raise SystemExit(
            f'error: cannot resume: {source}, which is {problem}. Pass an older '
            'complete checkpoint with --resume PATH, or start without --resume.')
    return path


def main():
    args = parse_args()
    from mmengine.config import Config
    from mmengine.logging import print_log
    from mmengine.runner import Runner

    from mobilenet_tasks.converters.pretrained import (PretrainedError,
                                                       fetch_config_weights)
    from mobilenet_tasks.datasets.checks import (DatasetNotFoundError, check_data_files,
                                                 missing_data_files)
    from mobilenet_tasks.engine import (apply_common_options, apply_threads,
                                        enable_safe_resume, finish_distributed)
    from mobilenet_tasks.utils.config import resolve_config
    from mobilenet_tasks.utils.weights import check_fits
    try:
        config = resolve_config(args.config)
        apply_threads(args)
        cfg = Config.fromfile(config)
        if args.qat and args.work_dir is None and cfg.get('work_dir') is None:
            name = osp.splitext(osp.basename(str(config)))[0]
            args.work_dir = osp.join('work_dirs', f'{name}_qat')
        cfg = apply_common_options(cfg, args, config)  # --cfg-options: the given config
        if args.load_from is not None:
            cfg.load_from = args.load_from
        if args.qat:  # its settings: --qat-iters, else the config's qat dict
            from mobilenet_tasks.deployment.qat_config import qat_config
            cfg = qat_config(cfg, None, resuming=args.resume is not None,
                             iters=args.qat_iters)
    except ValueError as error:
        raise SystemExit(f'error: {error}')
    float_checkpoint = cfg.model.get('float_checkpoint') if args.qat else None
    if float_checkpoint and not osp.isfile(float_checkpoint) and (
            '://' not in float_checkpoint):
        raise SystemExit(f'error: --load-from {float_checkpoint}: no such file (QAT '
                         'starts from a trained float checkpoint)')
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
    enable_safe_resume(cfg)
    resume_from = check_resume_checkpoint(cfg)
    loaders = [name for name in ('train_dataloader', 'val_dataloader')
               if cfg.get(name) and (name != 'val_dataloader' or cfg.get('val_cfg'))]
    try:
        check_data_files(cfg, loaders=loaders)  # training reads these, not the test set
    except DatasetNotFoundError as error:
        raise SystemExit(f'error: {error}')
    for loader, _, path in missing_data_files(cfg, loaders=('test_dataloader', )):
        print_log(f'test_dataloader: {path} does not exist. Training does not read it; '
                  'tools/test.py will (val_dataloader overrides do not reach '
                  'test_dataloader: set test_dataloader.dataset too)',
                  logger='current', level=logging.WARNING)
    if not cfg.get('resume'):
        try:  # pretrained starts: downloaded and converted before anything runs
            fetch_config_weights(cfg)
        except PretrainedError as error:
            raise SystemExit(f'error: {error}')
    runner = Runner.from_cfg(cfg)
    if resume_from is not None:  # mmengine's resume only warns about what does not fit
        try:
            check_fits(runner.model, resume_from, config)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f'error: cannot resume: {error}')
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
