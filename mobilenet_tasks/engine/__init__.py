from .checkpointing import (AtomicCheckpointHook, RNGStateHook, atomic_write_text,
                            check_checkpoint_file, enable_safe_resume, get_rng_state,
                            set_rng_state)
from .distributed import (CPUDistributedDataParallel, CPUSyncBatchNorm,
                          convert_to_cpu_sync_bn, init_cpu_dist)
from .cfg_options import CfgOptionsError, DictAction, check_cfg_options
from .runner_setup import (add_common_arguments, apply_common_options, apply_threads,
                           finish_distributed, parse_args_with_local_rank)

__all__ = ['add_common_arguments', 'apply_common_options', 'parse_args_with_local_rank',
           'apply_threads', 'finish_distributed', 'CfgOptionsError', 'DictAction',
           'check_cfg_options',
           'AtomicCheckpointHook', 'RNGStateHook', 'atomic_write_text',
           'check_checkpoint_file', 'enable_safe_resume', 'get_rng_state',
           'set_rng_state', 'CPUDistributedDataParallel', 'CPUSyncBatchNorm',
           'convert_to_cpu_sync_bn', 'init_cpu_dist']
