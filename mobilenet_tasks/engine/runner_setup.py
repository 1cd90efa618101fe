"""Turning command-line options into a Runner config: shared by tools/train.py and
tools/test.py, for our configs and for any mmdet/mmseg/mmpretrain config."""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The options tools/train.py and tools/test.py share, as OpenMMLab tools name them."""
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_args_with_local_rank(parser: argparse.ArgumentParser):
    """Parse, and export LOCAL_RANK as torch.distributed.launch users expect."""
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_common_options(cfg: Config, args, config_path: str) -> Config:
    """Apply ``--work-dir``, ``--launcher`` and ``--cfg-options`` to ``cfg``.

    The work dir defaults to ``work_dirs/<config name>``. Without a GPU, distributed
    runs use gloo, and DDP is wrapped without ``device_ids`` (mmengine's Runner passes
    ``device_ids=[LOCAL_RANK]``, which PyTorch rejects for a CPU model).
    """
    if getattr(args, 'cfg_options', None):
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])
    if args.launcher != 'none' and not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
        wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    return cfg
