"""Parameters and multiply-adds, counted one way for the whole project.

MAdds are what the MobileNet papers count: the multiply-adds of convolutions and fully
connected layers, one fused multiply-add = 1, plus bilinear resizing (4 per output
value), which is real work in segmentation heads. We take them from mmengine's
FlopAnalyzer (``by_operator()`` ``conv + linear + upsample_bilinear2d``, model in eval
mode); its total also counts batch norm and pooling, a few percent more.

A segmentor (an mmseg ``EncoderDecoder``) is counted up to logits at the input's size:
its ``mode='tensor'`` output is at output stride 8 or 16 and its ``predict`` resizes
it bilinearly, which we count as well. The paper's Table 7 figures include that resize
(19 x 1024 x 2048 x 4 = 0.16B MAdds): without it every row sits 2-5% under the
paper's and the V3-Small rows 7-9% under; with it all rows are within 3%.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer


class _TensorMode(nn.Module):
    """Call an OpenMMLab model (mmdet/mmseg/mmpretrain) in ``mode='tensor'``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        outputs = self.model(inputs, mode='tensor')
        head = getattr(self.model, 'decode_head', None)
        if head is not None and isinstance(outputs, torch.Tensor):
            # A segmentor: its predict() resizes the logits to the input, count that.
            outputs = F.interpolate(outputs, size=inputs.shape[2:], mode='bilinear',
                                    align_corners=getattr(head, 'align_corners',
                                                          False))
        return outputs


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
            madds = sum(by_operator.get(op, 0)
                        for op in ('conv', 'linear', 'upsample_bilinear2d'))
            flops = analyzer.total()
    finally:
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return dict(params=params, madds=madds, flops=flops)


def _takes_mode(model: nn.Module) -> bool:
    import inspect
    return 'mode' in inspect.signature(model.forward).parameters
