"""Helpers for tests that compare our models with reference implementations."""
from pathlib import Path

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
    path = Path(__file__).resolve().parents[1] / relative_path
    name = path.stem + '_tool'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_ssdlite_config(data_root, input_size: int = 128, batch_size: int = 2,
                        train_split: str = 'train') -> str:
    """Text of a config for tool tests: the SSDLite demo made small (V3-Small
    backbone, ``input_size`` square inputs, no augmentation, loaders without workers)
    over a COCO tree at ``data_root`` (``make_demo_coco``). Tests append their schedule.
    """
    root = Path(__file__).resolve().parents[1]
    return f"""
_base_ = '{root}/configs/ssdlite_v3_large_demo.py'
input_size = {input_size}
data_root = '{data_root}/'
model = dict(
    backbone=dict(arch='small', expansion_indices=(9, ), out_indices=(12, )),
    bbox_head=dict(anchor_generator=dict(input_size=input_size)))
_pipe = [dict(type='LoadImageFromFile'),
         dict(type='LoadAnnotations', with_bbox=True),
         dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
         dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                               'img_shape', 'scale_factor'))]
train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=_pipe,
                                     ann_file='annotations/instances_{train_split}.json',
                                     data_prefix=dict(img='{train_split}/')))
val_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=_pipe))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
"""
