"""How many threads a tool runs with, and a warning when the machine is busier than that.

OpenMP threads spin while they wait: two processes that each use every core of a small
machine slow each other down many times over (one inference ran at 0.4 fps with the
defaults and 92.5 fps with ``OMP_NUM_THREADS=1`` on a busy 2-core machine). So the
tools take ``--threads``; without it they use ``OMP_NUM_THREADS`` if set, else the cores
this process may run on divided by the processes of the run on this machine, and they
warn when the load already on the machine plus those threads exceeds the cores.

Imports nothing heavy: the tools call :func:`choose_threads` before importing torch.
"""
import os
from typing import Optional

ENV = 'OMP_NUM_THREADS'


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def processes_on_this_machine() -> int:
    """Processes of this run on this machine (torchrun's ``LOCAL_WORLD_SIZE``, Slurm's
    ``SLURM_NTASKS_PER_NODE``), 1 for a single process."""
    for name in ('LOCAL_WORLD_SIZE', 'SLURM_NTASKS_PER_NODE'):
        value = os.environ.get(name, '')
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def choose_threads(requested: Optional[int] = None) -> int:
    """The threads to use: ``requested`` (``--threads``), else ``OMP_NUM_THREADS``, else
    the available cores divided by the processes on this machine.

    Raises:
        ValueError: ``requested`` or ``OMP_NUM_THREADS`` is not a positive integer.
    """
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise ValueError(f'--threads must be a positive integer, got {requested!r}')
        return requested
    env = os.environ.get(ENV)
    if env is not None and env.strip():
        if not env.strip().isdigit() or int(env) < 1:
            raise ValueError(f'{ENV}={env!r} is not a positive integer; unset it or '
                             'pass --threads N')
        return int(env)
    return max(1, available_cores() // processes_on_this_machine())


def busy_warning(threads: int, processes: Optional[int] = None,
                 cores: Optional[int] = None,
                 load: Optional[float] = None) -> Optional[str]:
    """A warning when the machine's 1-minute load average plus the threads this run
    adds exceed its cores (OpenMP threads would then share cores and spin) and fewer
    threads could be asked for (more than one a process), else None.

    Args:
        threads (int): Threads per process.
        processes (int, optional): Processes of this run on the machine (default
            :func:`processes_on_this_machine`).
        cores (int, optional): Default :func:`available_cores`.
        load (float, optional): Default ``os.getloadavg()[0]`` (None where there is no
            load average: no warning).
    """
    processes = processes or processes_on_this_machine()
    cores = cores or available_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    wanted = threads * processes
    if threads <= 1 or load + wanted <= cores + 0.5:
        return None  # fits, or one thread a process: nothing fewer to ask for
    free = max(1, int(cores - load + 0.5) // processes)
    return (f'the machine is busy: load average {load:.1f} on {cores} cores, and this '
            f'run adds {wanted} thread{"s" * (wanted != 1)}; OpenMP threads that share '
            'cores spin and can make a run many times slower. Pass --threads '
            f'{free} (or set {ENV}), or wait for the other work to finish.')


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads in torch, and in the processes this one starts
    (``OMP_NUM_THREADS``; data loader workers use one each, as PyTorch sets them)."""
    os.environ[ENV] = str(threads)
    import torch
    torch.set_num_threads(threads)
