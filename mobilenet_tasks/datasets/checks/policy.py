"""The config's ``data_check`` policy, and which files it has decoded."""
from typing import NamedTuple

import numpy as np

__all__ = ['POLICIES', 'DataCheckPolicy', 'data_check_policy', 'decoded_indices']

POLICIES = ('fail', 'skip', 'off')


class DataCheckPolicy(NamedTuple):
    policy: str = 'fail'
    decode_images: object = 'auto'
    decode_labels: object = 'auto'
    decode_limit: int = 200
    max_runtime_skips: int = 100


def data_check_policy(cfg) -> DataCheckPolicy:
    """The config's ``data_check`` (defaults for what it leaves out); ValueError for a
    bad value."""
    given = dict(cfg.get('data_check') or {})
    unknown = set(given) - set(DataCheckPolicy._fields)
    if unknown:
        raise ValueError(f'data_check: unknown keys {sorted(unknown)}; the keys are '
                         f'{", ".join(DataCheckPolicy._fields)}')
    policy = DataCheckPolicy(**given)
    if policy.policy not in POLICIES:
        raise ValueError(f'data_check.policy must be one of {POLICIES}, got '
                         f'{policy.policy!r}')
    for key in ('decode_images', 'decode_labels'):
        if getattr(policy, key) not in (True, False, 'auto'):
            raise ValueError(f'data_check.{key} must be True, False or \'auto\', got '
                             f'{getattr(policy, key)!r}')
    return policy


def decoded_indices(decode, count: int, limit: int):
    """The indices of the ``count`` files to decode: all (True), none (False), or for
    ``'auto'`` all when there are at most ``limit``, else ``limit`` evenly spaced ones
    (a systematic fault, such as labelIds for labelTrainIds, still shows)."""
    if decode == 'auto':
        if count <= limit:
            return range(count)
        return set(np.linspace(0, count - 1, max(limit, 1)).astype(int).tolist())
    return range(count) if decode else range(0)
