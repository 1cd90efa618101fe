from .runner_setup import apply_common_options

__all__ = ['apply_common_options']
