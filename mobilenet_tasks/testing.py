"""Helpers for tests that compare our models with reference implementations."""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def randomize_(model: nn.Module, generator: torch.Generator, convs: bool = True) -> int:
    """Give ``model`` non-trivial weights in place, module by module.

    BN layers get random running statistics and affine parameters (so BN folding or a
    mixed-up BN mapping shows in the outputs); with ``convs``, Conv2d layers get
    He-normal weights and N(0, 0.1) biases.

    Args:
        model (nn.Module): The model to change.
        generator (torch.Generator): The source of randomness (seeded by the caller).
        convs (bool): Randomize convolutions too.

    Returns:
        int: How many BN layers were randomized (tests assert it is not 0).
    """
    num_bn = 0
    for m in model.modules():
        if convs and isinstance(m, nn.Conv2d):
            m.weight.normal_(0, (2 / m.weight[0].numel())**0.5, generator=generator)
            if m.bias is not None:
                m.bias.normal_(0, 0.1, generator=generator)
        elif isinstance(m, _BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
            m.running_var.copy_(torch.empty(c).uniform_(0.5, 2.0, generator=generator))
            m.weight.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=generator))
            m.bias.copy_(torch.randn(c, generator=generator) * 0.2)
            num_bn += 1
    return num_bn


def load_tool(relative_path: str):
    """Import a script of ``tools/`` (they are not a package) as a module, so that
    tests call its ``main(argv)`` in-process.

    Args:
        relative_path (str): Its path from the repository root, e.g.
            ``'tools/deployment/export_onnx.py'``.
    """
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / relative_path
    name = path.stem + '_tool'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
