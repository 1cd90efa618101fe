"""`make demo`: train SSDLite-MobileNetV3-Large on the built-in demo dataset and report
the COCO bbox mAP it reaches on the demo val split, before and after training.

    python tools/misc/demo.py [--iters 600] [--work-dir work_dirs/demo]

The dataset (4 classes of shapes, 400 train and 100 val images, 160x160) is generated
deterministically into data/demo_coco on first use.
"""
import argparse
import json
import os
import os.path as osp
import time

from mmengine.config import DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'ssdlite_v3_large_demo.py')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s)')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'))
    parser.add_argument('--data-root', default=osp.join(ROOT, 'data', 'demo_coco'))
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='torch threads (default: all cores)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the demo config, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    import torch
    torch.set_num_threads(args.threads)

    from mmengine.config import Config
    from mmengine.runner import Runner

    import mobilenet_tasks  # noqa: F401
    from mobilenet_tasks.datasets.demo_coco import make_demo_coco

    start = time.time()
    summary = make_demo_coco(args.data_root)
    print(f'demo dataset: {args.data_root} '
          f'({"reused" if summary["reused"] else "generated"})')

    cfg = Config.fromfile(CONFIG)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    root = args.data_root.rstrip('/') + '/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = root + 'annotations/instances_val.json'
    if args.iters is not None:
        cfg.train_cfg.max_iters = args.iters
        cfg.train_cfg.val_interval = args.iters
        cfg.param_scheduler[1].T_max = cfg.param_scheduler[1].end = args.iters
    cfg.work_dir = args.work_dir
    runner = Runner.from_cfg(cfg)

    before = runner.val_loop.run() if hasattr(runner, 'val_loop') else {}
    train_start = time.time()
    runner.train()
    train_time = time.time() - train_start
    after = runner.test()

    result = dict(
        config=osp.relpath(CONFIG, ROOT),
        iters=cfg.train_cfg.max_iters,
        batch_size=cfg.train_dataloader.batch_size,
        threads=args.threads,
        train_minutes=round(train_time / 60, 2),
        total_minutes=round((time.time() - start) / 60, 2),
        mAP_before=before.get('coco/bbox_mAP'),
        mAP=after.get('coco/bbox_mAP'),
        mAP_50=after.get('coco/bbox_mAP_50'))
    with open(osp.join(args.work_dir, 'demo_result.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print('\n== demo result ==')
    print(f'SSDLite-MobileNetV3-Large, demo val split ({len(summary["classes"])} classes)')
    print(f'bbox mAP before training: {result["mAP_before"]:.3f}')
    print(f'bbox mAP after {result["iters"]} iterations of batch '
          f'{result["batch_size"]}: {result["mAP"]:.3f} (mAP@0.5 {result["mAP_50"]:.3f})')
    print(f'training took {result["train_minutes"]:.1f} min on {args.threads} threads; '
          f'everything {result["total_minutes"]:.1f} min')
    print(f'checkpoint and logs: {args.work_dir}')


if __name__ == '__main__':
    main()
