"""Turning command-line options into a Runner config: shared by tools/train.py and
tools/test.py, for our configs and for any mmdet/mmseg/mmpretrain config."""
import os.path as osp

import torch
from mmengine.config import Config


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
