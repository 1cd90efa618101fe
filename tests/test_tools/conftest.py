"""Fixtures shared by the converter equivalence tests of this folder."""
import copy

import pytest

from mobilenet_tasks.testing import float64_copy


@pytest.fixture(scope='module')
def reference64(reference):
    """A float64 copy of the module's ``reference`` model (torchvision's)."""
    return copy.deepcopy(reference).double()


@pytest.fixture(scope='module')
def ours64(ours):
    """A float64 copy of the module's ``ours`` model, the config's mean and std in
    float64 too."""
    return float64_copy(ours)
