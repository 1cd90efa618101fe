import os

import pytest
import torch

# Tests run on the CPU with few threads: two pytest-xdist workers share 2 cores.
torch.set_num_threads(1)
os.environ.setdefault('OMP_NUM_THREADS', '1')

import mobilenet_tasks  # noqa: E402,F401  (the OpenMMLab version check)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
