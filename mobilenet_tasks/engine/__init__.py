from .runner_setup import (add_common_arguments, apply_common_options,
                           parse_args_with_local_rank)

__all__ = ['add_common_arguments', 'apply_common_options', 'parse_args_with_local_rank']
