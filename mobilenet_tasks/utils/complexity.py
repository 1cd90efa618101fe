"""Parameters and multiply-adds, counted one way for the whole project.

MAdds are what the MobileNet papers count: the multiply-adds of convolutions and fully
connected layers, one fused multiply-add = 1. We take them from mmengine's FlopAnalyzer
(``by_operator()['conv'] + ['linear']``, model in eval mode); its total also counts batch
norm, pooling and upsampling, a few percent more.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer


class _TensorMode(nn.Module):
    """Call an OpenMMLab model (mmdet/mmseg/mmpretrain) in ``mode='tensor'``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(inputs, mode='tensor')


def count_complexity(model: nn.Module, shape: Sequence[int]) -> Dict[str, float]:
    """Count params and MAdds of a model on one input of ``shape = (H, W)``.

    Args:
        model (nn.Module): An OpenMMLab model (forward takes ``mode``) or a plain module
            taking an image batch.
        shape (Sequence[int]): Input height and width.

    Returns:
        dict: ``params`` (all parameters), ``madds`` (conv + linear multiply-adds),
        ``flops`` (mmengine's total, which also counts norms, pooling, upsampling).
    """
    height, width = shape
    was_training = model.training
    model.eval()
    wrapped = _TensorMode(model) if _takes_mode(model) else model
    inputs = torch.zeros(1, 3, height, width)
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(wrapped, (inputs, ))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            by_operator = analyzer.by_operator()
            madds = by_operator.get('conv', 0) + by_operator.get('linear', 0)
            flops = analyzer.total()
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return dict(params=params, madds=madds, flops=flops)


def _takes_mode(model: nn.Module) -> bool:
    import inspect
    return 'mode' in inspect.signature(model.forward).parameters
