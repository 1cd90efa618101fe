"""Turning command-line options into a Runner config: shared by tools/train.py and
tools/test.py, for our configs and for any mmdet/mmseg/mmpretrain config."""
import logging
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel

from mobilenet_tasks.utils.checkpoint import allow_mmengine_checkpoints
from mobilenet_tasks.utils.threads import busy_warning, choose_threads, set_threads
from .cfg_options import check_cfg_options
from .distributed import init_cpu_dist


def finish_distributed() -> None:
    """End a distributed run cleanly: wait for every process, then destroy the process
    group. A process that exits while another still runs (rank 0 evaluating, say)
    closes its gloo connections under the other's background threads, which can abort
    it at exit ("terminate called without an active exception", SIGABRT), failing a run
    that had finished; torch also asks for the group to be destroyed before exit."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def apply_threads(args) -> int:
    """Set the threads ``--threads`` asks for (or the default of
    :func:`~mobilenet_tasks.utils.threads.choose_threads`), warn when the machine is
    busier than that, and return the number."""
    threads = choose_threads(getattr(args, 'threads', None))
    set_threads(threads)
    warning = busy_warning(threads)
    if warning:
        print_log(warning, logger='current', level=logging.WARNING)
    return threads


def apply_common_options(cfg: Config, args, config_path: str) -> Config:
    """Apply ``--work-dir``, ``--launcher`` and ``--cfg-options`` to ``cfg``.

    ``--cfg-options`` are checked first (:func:`~.cfg_options.check_cfg_options`:
    ``CfgOptionsError``, a ValueError, for a key that would be ignored or fail).

    The work dir defaults to ``work_dirs/<config name>``. With a GPU, a distributed
    launcher gets mmengine's set-up as it is (NCCL, torch's SyncBatchNorm). Without one
    (or with ``CUDA_VISIBLE_DEVICES=-1``) the run is made to work on CPU processes:

    * the backend is gloo, and the process group is initialised here
      (:func:`~mobilenet_tasks.engine.distributed.init_cpu_dist`): mmengine's
      ``init_dist`` calls ``torch.cuda.set_device``, which fails without a GPU, and the
      Runner skips it when the group exists;
    * the model wrapper is :class:`~mobilenet_tasks.engine.distributed.
      CPUDistributedDataParallel` without ``device_ids`` (mmengine passes
      ``device_ids=[LOCAL_RANK]``, which PyTorch rejects for a CPU model); it turns
      SyncBN layers into ``CPUSyncBatchNorm``, whose statistics are all-reduced with
      gloo (torch's SyncBatchNorm raises on CPU tensors).
    """
    # the Runner's load_from and resume read mmengine checkpoints (weights_only)
    allow_mmengine_checkpoints()
    if getattr(args, 'cfg_options', None):
        check_cfg_options(cfg, args.cfg_options)
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])
    if args.launcher != 'none' and not torch.cuda.is_available():
        dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        dist_cfg['backend'] = 'gloo'
        wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
        if wrapper.get('type', 'MMDistributedDataParallel') in (
                'MMDistributedDataParallel', MMDistributedDataParallel):
            wrapper['type'] = 'mobilenet_tasks.CPUDistributedDataParallel'
        else:
            print_log(
                f'model_wrapper_cfg type {wrapper["type"]}: SyncBN layers are not made '
                'CPU-capable (only MMDistributedDataParallel is replaced by '
                'CPUDistributedDataParallel); torch.nn.SyncBatchNorm fails on CPUs. '
                'Call mobilenet_tasks.engine.distributed.convert_to_cpu_sync_bn(model) '
                'in the wrapper.', logger='current', level=logging.WARNING)
        wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
        init_cpu_dist(args.launcher, backend='gloo', timeout=dist_cfg.get('timeout'))
    return cfg
