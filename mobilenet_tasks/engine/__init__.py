from .checkpointing import (AtomicCheckpointHook, RNGStateHook, atomic_write_text,
                            check_checkpoint_file, enable_safe_resume, get_rng_state,
                            set_rng_state)
from .distributed import (CPUDistributedDataParallel, CPUSyncBatchNorm,
                          convert_to_cpu_sync_bn, init_cpu_dist)
from mobilenet_tasks.utils.arguments import (DictAction, add_common_arguments,
                                             parse_args_with_local_rank)
from .cfg_options import CfgOptionsError, check_cfg_options
from .runner_setup import apply_common_options, apply_threads, finish_distributed

__all__ = ['add_common_arguments', 'apply_common_options', 'parse_args_with_local_rank',
           'apply_threads', 'finish_distributed', 'CfgOptionsError', 'DictAction',
           'check_cfg_options',
           'AtomicCheckpointHook', 'RNGStateHook', 'atomic_write_text',
           'check_checkpoint_file', 'enable_safe_resume', 'get_rng_state',
           'set_rng_state', 'CPUDistributedDataParallel', 'CPUSyncBatchNorm',
           'convert_to_cpu_sync_bn', 'init_cpu_dist']
