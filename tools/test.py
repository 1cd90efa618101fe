"""Test (evaluate) a checkpoint with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR]
        [--cityscapes-eval] [--fuse-conv-bn] [--backend RUNTIME] [--runtime-threads N]

CHECKPOINT may be a PyTorch checkpoint or a model file exported from it, float32 or
int8: a file a runtime opens (``mobilenet_tasks.backends.RUNTIMES``: ``.onnx`` ->
onnxruntime, ``.pte`` -> ExecuTorch, ``.xml`` -> OpenVINO; ``--backend openvino`` runs
an ``.onnx`` file with OpenVINO) is run by it in place of the PyTorch model
(``mobilenet_tasks.backends.BackendModel``), with the same data pipeline, metrics,
drawing and outputs. ``--fuse-conv-bn`` folds the
BatchNorm layers into the convolutions before testing (the same predictions, faster).

Metrics are the config's test evaluator (COCO bbox mAP with pycocotools for detection,
mIoU for segmentation); they are printed and written to ``<work dir>/test_metrics.json``.
``--cityscapes-eval`` (Cityscapes configs) adds cityscapesscripts' own evaluation next to
mIoU: ``cityscapes/averageScoreClasses`` and the others, as fractions, with the
predictions as labelIds PNGs in ``<work dir>/cityscapes_eval/``.
"""
import argparse
import json
import numbers
import os.path as osp

# Only the argument parsing is imported here: torch, mmengine's Runner, mmdet and the
# models load in the functions once the arguments are parsed, so --help and an
# argument error answer at once.
from mobilenet_tasks.utils.arguments import (add_common_arguments,
                                             parse_args_with_local_rank)

CITYSCAPES_EVAL_DIR = 'cityscapes_eval'  # under the work dir


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (or a mobilenet_tasks:// '
                        'address: README, "Pretrained starts")')
    parser.add_argument('--work-dir', help='the dir to save the metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save drawn predictions to this dir')
    parser.add_argument(
        '--cityscapes-eval', action='store_true',
        help="also evaluate with cityscapesscripts' evalPixelLevelSemanticLabeling "
        '(Cityscapes configs; needs the *_gtFine_labelIds.png and '
        '*_gtFine_instanceIds.png of gtFine); predictions are kept as labelIds PNGs '
        f'in WORK_DIR/{CITYSCAPES_EVAL_DIR}')
    parser.add_argument('--fuse-conv-bn', action='store_true',
                        help='fold BatchNorm into the preceding convolutions first '
                        '(PyTorch checkpoints)')
    parser.add_argument('--backend', default=None,
                        help='the runtime of an exported CHECKPOINT: onnxruntime, '
                        'executorch or openvino (default: the one its suffix names; '
                        'openvino also runs .onnx files)')
    parser.add_argument('--runtime-threads', '--onnx-threads', type=int, default=None,
                        dest='runtime_threads',
                        help="the runtime's threads for an exported CHECKPOINT "
                        '(default: --threads)')
    add_common_arguments(parser)
    return parse_args_with_local_rank(parser)


def enable_drawing(cfg, show_dir: str) -> None:
    """Turn on the config's visualization hook (mmdet's or mmseg's) to save drawings.

    mmdet's hook draws every test image into ``test_out_dir``; mmseg's draws every
    ``interval``-th one (50 by default) with the visualizer, so the interval becomes 1
    and the visualizer saves under ``show_dir`` (``vis_data/vis_image/*.png``).
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit('--show-dir needs a `visualization` hook in default_hooks '
                         '(DetVisualizationHook or SegVisualizationHook)')
    hook['draw'] = True
    if 'Det' in str(hook.get('type', '')):
        hook['test_out_dir'] = show_dir
    else:
        hook['interval'] = 1
        cfg.visualizer['save_dir'] = show_dir


def add_cityscapes_eval(cfg, config_path: str) -> str:
    """Add cityscapesscripts' evaluation to the test evaluator, next to its metrics.

    Args:
        cfg (Config): A config testing on a CityscapesDataset.
        config_path (str): The config's path, for messages.

    Returns:
        str: The folder the labelIds predictions are written to (under the work dir).
    """
    from mobilenet_tasks.datasets.checks import dataset_type_names
    types = dataset_type_names((cfg.get('test_dataloader') or {}).get('dataset'))
    if not types or any(t != 'CityscapesDataset' for t in types):
        raise SystemExit(
            "error: --cityscapes-eval runs cityscapesscripts' evaluation, which needs a "
            'segmentation config testing on CityscapesDataset; '
            f'{config_path} tests on {", ".join(types) or "no dataset"}. Drop the flag, '
            'or use a Cityscapes config such as configs/lraspp_v3_large_cityscapes.py.')
    output_dir = osp.join(cfg.work_dir, CITYSCAPES_EVAL_DIR)
    metric = dict(type='mobilenet_tasks.CityscapesMetric', output_dir=output_dir,
                  keep_results=True)
    evaluator = cfg.get('test_evaluator')
    if isinstance(evaluator, dict) and 'metrics' in evaluator:  # an Evaluator config
        metrics = evaluator['metrics']
        evaluator['metrics'] = (list(metrics) if isinstance(metrics, (list, tuple))
                                else [metrics]) + [metric]
    elif isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = list(evaluator) + [metric]
    else:
        cfg.test_evaluator = ([evaluator] if evaluator else []) + [metric]
    return output_dir


def drop_training(cfg) -> None:
    """Make the runner test-only: no train loop, train dataset, optimizer or schedule.

    Testing needs none of them, and with them a test can fail on the training data:
    mmseg's SegVisualizationHook (``--show-dir``) reads ``runner.iter``, which builds
    the train loop and with it the train dataset (a FileNotFoundError when only the
    val/test data is on the machine or pointed at).
    """
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg[key] = None


def _number(value):
    """A metric as a JSON number when it is one (numpy scalars too), else a string.

    numpy floats go through their shortest repr: IoUMetric's float32 13.76 is 13.76,
    not 13.760000228881836.
    """
    import numpy as np
    if isinstance(value, np.floating):
        return float(str(value))
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def fuse_after_loading(runner) -> None:
    """Fold BatchNorm into the convolutions once the runner has loaded the weights
    (it loads them at the start of ``test()``, so the folding is a hook there)."""
    from mmengine.hooks import Hook

    from mobilenet_tasks.deployment.fuse import fuse_conv_bn

    class _FuseConvBN(Hook):
        priority = 'VERY_LOW'

        def before_test(self, runner):
            model = runner.model.module if hasattr(runner.model, 'module') \
                else runner.model
            runner.logger.info(f'--fuse-conv-bn: {fuse_conv_bn(model.eval())}')

    runner.register_hook(_FuseConvBN())


def qat_checkpoint_config(cfg, checkpoint: str, fuse_conv_bn: bool):
    """``cfg`` for ``checkpoint``: a QAT checkpoint builds its QAT model (whose graph
    runs the simulated int8 network), from a QAT config or from the float one."""
    from mobilenet_tasks.deployment.qat_config import config_for_checkpoint
    from mobilenet_tasks.utils.weights import load_weights
    try:
        state_dict, meta = load_weights(checkpoint)
    except (ValueError, FileNotFoundError):
        return cfg  # not readable: the runner's own loading reports it, after the
        # data checks
    try:
        new = config_for_checkpoint(cfg, state_dict, meta)
    except ValueError as error:
        raise SystemExit(f'error: {checkpoint}: {error}')
    if new is not cfg and fuse_conv_bn:
        raise SystemExit('error: --fuse-conv-bn: a QAT checkpoint has its batch norms '
                         'folded in its graph already; drop the flag')
    new.load_from = checkpoint
    return new


def main():
    args = parse_args()
    from mmengine.config import Config
    from mmengine.evaluator import DumpResults
    from mmengine.runner import Runner

    from mobilenet_tasks.backends import (PYTORCH, BackendError, backend_model_config,
                                          choose_backend)
    from mobilenet_tasks.datasets.checks import (DatasetNotFoundError,
                                                 check_cityscapes_eval_files,
                                                 check_data_files)
    from mobilenet_tasks.engine import (apply_common_options, apply_threads,
                                        finish_distributed)
    from mobilenet_tasks.utils.config import resolve_config
    from mobilenet_tasks.utils.weights import check_fits
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint {args.checkpoint} does not exist')
    if args.out and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit(f'--out must be a .pkl file, got {args.out}')
    try:
        config = resolve_config(args.config)
        threads = apply_threads(args)
        cfg = apply_common_options(Config.fromfile(config), args, config)
    except ValueError as error:
        raise SystemExit(f'error: {error}')
    try:
        runtime = choose_backend(args.backend, args.checkpoint)
    except BackendError as error:
        raise SystemExit(f'error: {error}')
    runtime = None if runtime == PYTORCH else runtime
    if runtime and args.fuse_conv_bn:
        raise SystemExit('error: --fuse-conv-bn is for PyTorch checkpoints; an exported '
                         f'model ({runtime}) has its BatchNorm folded already')
    if runtime:
        cfg.model = backend_model_config(args.checkpoint, cfg,
                                         args.runtime_threads or threads, runtime)
        cfg.load_from = None
    else:
        cfg.load_from = args.checkpoint
        if args.fuse_conv_bn or '://' not in args.checkpoint:
            cfg = qat_checkpoint_config(cfg, args.checkpoint, args.fuse_conv_bn)
    drop_training(cfg)
    if args.show_dir:
        enable_drawing(cfg, args.show_dir)
    cityscapes_dir = add_cityscapes_eval(cfg, config) if args.cityscapes_eval \
        else None
    try:
        check_data_files(cfg, loaders=('test_dataloader', ))
        if cityscapes_dir:
            check_cityscapes_eval_files(cfg, loaders=('test_dataloader', ))
    except DatasetNotFoundError as error:
        raise SystemExit(f'error: {error}')
    runner = Runner.from_cfg(cfg)
    if not runtime:  # mmengine's own loading only warns about what does not fit
        try:
            check_fits(runner.model, args.checkpoint, config)
        except (ValueError, FileNotFoundError) as error:
            raise SystemExit(f'error: {error}')
    if args.fuse_conv_bn:
        fuse_after_loading(runner)
    if args.out:
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    finish_distributed()
    out = osp.join(cfg.work_dir, 'test_metrics.json')
    with open(out, 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint,
                       metrics={k: _number(v) for k, v in metrics.items()}), f, indent=2)
    print('metrics:', {k: _number(v) for k, v in metrics.items()})
    if cityscapes_dir:
        print('cityscapesscripts evaluated the labelIds predictions in '
              f'{cityscapes_dir}')
    print(f'metrics written to {out}')


if __name__ == '__main__':
    main()
