"""Distributed training and testing without GPUs: gloo processes on CPUs.

mmengine's launchers assume GPUs on two counts, and this module covers both:

* ``mmengine.dist.init_dist`` calls ``torch.cuda.set_device(local_rank)`` before it
  initialises the process group, which raises on a machine without an NVIDIA driver.
  :func:`init_cpu_dist` sets up the same environment (``pytorch``: torchrun's
  ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; ``slurm``: ``SLURM_PROCID``,
  ``SLURM_NTASKS``, the first host of ``SLURM_NODELIST``; ``mpi``: Open MPI's
  ``OMPI_COMM_WORLD_*``) and initialises a gloo process group; the Runner then finds
  the group initialised and does not call ``init_dist``.
* ``torch.nn.SyncBatchNorm`` raises on CPU tensors in training ("SyncBatchNorm expected
  input tensor to be on GPU"). :class:`CPUSyncBatchNorm` computes the batch statistics
  over all processes with autograd-aware ``all_reduce`` calls instead, and
  :class:`CPUDistributedDataParallel` (the model wrapper ``apply_common_options`` picks
  when there is no GPU) turns the model's SyncBatchNorm layers into it.

With GPUs none of this is used: mmengine's ``init_dist`` with NCCL and torch's
SyncBatchNorm.
"""
import os
import subprocess
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from torch.nn.modules.batchnorm import _BatchNorm

from mobilenet_tasks.registry import MODEL_WRAPPERS


def init_cpu_dist(launcher: str, backend: str = 'gloo',
                  timeout: Optional[float] = None) -> None:
    """Initialise the default process group for CPU processes, as
    ``mmengine.dist.init_dist`` does for GPU ones but without choosing a GPU.

    Args:
        launcher (str): ``'pytorch'`` (torchrun), ``'slurm'`` or ``'mpi'``.
        backend (str): The process group backend. Defaults to ``'gloo'``.
        timeout (float, optional): Seconds before a collective gives up (the config's
            ``env_cfg.dist_cfg.timeout``).
    """
    if dist.is_initialized():
        return
    env = os.environ
    if launcher == 'slurm':
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            env['MASTER_ADDR'] = subprocess.getoutput(
                f'scontrol show hostname {env["SLURM_NODELIST"]} | head -n1')
        env['WORLD_SIZE'] = env['SLURM_NTASKS']
        env['RANK'] = env['SLURM_PROCID']
        env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')
    elif launcher == 'mpi':
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:
            raise KeyError('The environment variable MASTER_ADDR is not set')
        env['WORLD_SIZE'] = env['OMPI_COMM_WORLD_SIZE']
        env['RANK'] = env['OMPI_COMM_WORLD_RANK']
        env['LOCAL_RANK'] = env.get('OMPI_COMM_WORLD_LOCAL_RANK', '0')
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    kwargs = {} if timeout is None else dict(timeout=timedelta(seconds=timeout))
    dist.init_process_group(backend=backend, rank=int(env['RANK']),
                            world_size=int(env['WORLD_SIZE']), **kwargs)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes, differentiable: the gradient is the sum over the
    processes of the gradients of the result. It is ``torch.distributed.nn.functional.
    all_reduce`` (deprecated since torch 2.x, with a FutureWarning at every call)."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, group=group)
        return tensor

    @staticmethod
    def backward(ctx, grad_output):
        return _AllReduceSum.apply(grad_output, ctx.group), None


def _syncing(module: _BatchNorm, input: torch.Tensor) -> bool:
    """Whether ``module`` must synchronise its statistics for ``input`` itself: in
    training, on a CPU tensor, with more than one process."""
    return (module.training and input.device.type == 'cpu' and dist.is_available()
            and dist.is_initialized() and dist.get_world_size(
                module.process_group or dist.group.WORLD) > 1)


class CPUSyncBatchNorm(_BatchNorm):
    """Batch normalisation whose batch statistics are those of all the processes, on
    CPU tensors (gloo): what ``torch.nn.SyncBatchNorm`` does on GPUs.

    In training with more than one process, the batch mean and variance are those of
    the samples of all processes: per-channel sums are added up with a differentiable
    ``all_reduce`` (the backward pass adds the gradients of the statistics over the
    processes as well, as torch's SyncBatchNorm does), the mean first, then the sum of
    squared deviations from it. The output, the gradients and the running statistics
    (momentum update with the unbiased variance over all the samples) are those of
    ``BatchNorm`` given the union of the processes' batches. Otherwise (evaluation, one
    process, or a tensor not on the CPU, for which torch's SyncBatchNorm is the layer
    to use) it is ``BatchNorm``.

    It is not a ``torch.nn.SyncBatchNorm`` subclass: DDP refuses those on CPU
    ("SyncBatchNorm layers only work with GPU modules"). Its parameters, buffers and
    state-dict keys are SyncBatchNorm's (and BatchNorm's), and
    :func:`convert_to_cpu_sync_bn` changes the class of SyncBatchNorm layers in place.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum=0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f'expected at least 2D input (got {input.dim()}D input)')

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not _syncing(self, input):
            return super().forward(input)
        self._check_input_dim(input)
        group = self.process_group or dist.group.WORLD
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        dtype = torch.promote_types(input.dtype, torch.float32)  # fp16/bf16: sum in fp32
        count = torch.tensor([input.numel() // input.size(1)], dtype=dtype)
        # one all_reduce for the sums and the count, one for the squared deviations
        totals = _AllReduceSum.apply(torch.cat([input.sum(dims, dtype=dtype), count]),
                                     group)
        n = totals[-1].detach()
        mean = totals[:-1] / n
        centered = input.to(dtype) - mean.view(shape)
        var = _AllReduceSum.apply(centered.pow(2).sum(dims), group) / n
        output = centered * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        output = output.to(input.dtype)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / self.num_batches_tracked.item() if self.momentum is None
                          else self.momentum)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return output


def convert_to_cpu_sync_bn(model: nn.Module) -> int:
    """Make the model's ``torch.nn.SyncBatchNorm`` layers :class:`CPUSyncBatchNorm`,
    in place (same parameters and buffers); returns how many were converted."""
    converted = 0
    for module in model.modules():
        if isinstance(module, nn.SyncBatchNorm):  # mmcv registers a subclass as SyncBN
            module.__class__ = CPUSyncBatchNorm
            converted += 1
    return converted


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for CPU processes (gloo): SyncBN layers become
    :class:`CPUSyncBatchNorm` first, and what is synchronised is logged.

    ``tools/train.py`` and ``tools/test.py`` pick it (``apply_common_options``) when a
    distributed launcher is used without a GPU; give ``device_ids=None``.
    """

    def __init__(self, module: nn.Module, **kwargs):
        synced = convert_to_cpu_sync_bn(module)
        local = sum(isinstance(m, _BatchNorm)
                    and not isinstance(m, (nn.SyncBatchNorm, CPUSyncBatchNorm))
                    for m in module.modules())
        world = dist.get_world_size() if dist.is_initialized() else 1
        if synced:
            print_log(
                f'{synced} SyncBN layers (torch.nn.SyncBatchNorm raises on CPU tensors) '
                'compute their batch statistics over all '
                f'{world} CPU processes (gloo all_reduce; '
                'mobilenet_tasks.engine.distributed.CPUSyncBatchNorm), as on GPUs.',
                logger='current')
        if local:
            print_log(
                f'{local} BatchNorm layers (not SyncBN) normalise with the statistics '
                f'of their own process\'s batch ({world} processes): training differs '
                'from one process with the whole batch; set norm_cfg type SyncBN (or '
                "sync_bn='torch' in the config) to synchronise them.",
                logger='current')
        super().__init__(module=module, **kwargs)
