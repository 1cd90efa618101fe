"""Helpers for tests that compare our models with reference implementations.

How close two computations of the same numbers must be, whatever the CPU
------------------------------------------------------------------------
float32 results differ between CPUs (and between thread counts, batch sizes and
oneDNN/MLAS kernels) in their last bits, and a deep network amplifies that: with the
random weights and BN statistics of ``randomize_``, float32 outputs of one network
differ from the exact values by up to ~1e-4 of their scale. A fixed absolute tolerance
near that level passes on one machine and fails on the next. So every numeric test
uses one of two rules:

* **float64 where both sides can run in it** (our models, torchvision's, timm's,
  mmpretrain's, mmdet's post-processing on the CPU): rounding is then ~1e-16 relative,
  ~1e-13 after a network's amplification, and ``FLOAT64_RTOL`` (1e-9 of the values'
  scale) sits 10^4 above that and 10^4 below the first thing float32 itself
  introduces (a weight rounded to float32 moves an output by ~1e-7 of its scale), so a
  real difference stands out by many orders of magnitude.
* **float32 where float32 is the point** (ONNX graphs in onnxruntime, folded BN
  weights, a batched inference path): the bound is derived from this machine's own
  float32 rounding of the reference computation, measured against its float64 value
  (``float32_tolerance``), never from a number tuned on one CPU.
"""
from pathlib import Path
from typing import Iterable, Union

import numpy as np
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


def random_export_checkpoint(config, path, seed: int = 0):
    """Load ``config`` for export (:func:`~mobilenet_tasks.deployment.load_model`),
    give it random weights (:func:`randomize_`), scale a detector's last class and box
    convolutions by 0.2 (logits of a few units: no saturated, tied scores), and save
    them to ``path``.

    Returns:
        tuple: ``(checkpoint path, model, cfg, meta)``, the very weights a runtime's
        export is then compared with.
    """
    from mobilenet_tasks.deployment import load_model
    model, cfg, meta = load_model(config)
    randomize_(model, torch.Generator().manual_seed(seed))
    head = getattr(model, 'bbox_head', None)
    if head is not None:
        with torch.no_grad():
            for branch in list(head.cls_convs) + list(head.reg_convs):
                [m for m in branch.modules() if isinstance(m, nn.Conv2d)
                 ][-1].weight.mul_(0.2)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path), model, cfg, meta


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


def config_from_template(template: str, out, values: dict, edits=()) -> Path:
    """Follow the README's fine-tuning section: copy ``configs/finetune/<template>`` to
    ``out`` with ``_base_`` pointing into this checkout ("or point `_base_` at this
    checkout's configs/...") and ``values`` set in its first block (``name = value``
    lines); ``edits`` are further ``(old, new)`` text replacements, each of which must
    apply (the template's comments tell a user to make some, e.g. another ``_base_``).
    """
    import re
    root = Path(__file__).resolve().parents[1]
    text = (root / 'configs/finetune' / template).read_text()
    for old, new in edits:
        if old not in text:
            raise ValueError(f'{template} has no {old!r}')
        text = text.replace(old, new)
    text = re.sub(r"^_base_ = '\.\./(.+)'$",
                  lambda m: f"_base_ = '{root / 'configs' / m.group(1)}'", text,
                  count=1, flags=re.M)
    for name, value in values.items():
        text, n = re.subn(rf'^{re.escape(name)} = .*$', f'{name} = {value!r}', text,
                          count=1, flags=re.M)
        if n != 1:
            raise ValueError(f'{template} sets no {name}')
    out = Path(out)
    out.write_text(text)
    return out


# -- tolerances (see the module docstring) --------------------------------------------
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)  # 1.19e-7
FLOAT64_RTOL = 1e-9
# Another float32 computation of the same function (another library's kernels, another
# accumulation order, BN folded into the weights) rounds differently but not worse by
# more than a small factor; |theirs - ours| <= |theirs - exact| + |ours - exact|, so a
# bound of FLOAT32_FACTOR times our own rounding error leaves room for theirs to be up to
# FLOAT32_FACTOR - 1 times ours. The max of two such errors over a tensor differs by a
# factor of 1-3 from run to run and CPU to CPU.
FLOAT32_FACTOR = 10.0

Array = Union[torch.Tensor, np.ndarray, float]


def _as_float64(value: Array) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(value), dtype=torch.float64)


def max_abs(value: Array) -> float:
    """The largest absolute value (0 for an empty array)."""
    value = _as_float64(value)
    return float(value.abs().max()) if value.numel() else 0.0


def max_abs_diff(a: Array, b: Array) -> float:
    """The largest absolute difference of two arrays of the same shape."""
    a, b = _as_float64(a), _as_float64(b)
    assert a.shape == b.shape, (tuple(a.shape), tuple(b.shape))
    return max_abs(a - b)


def float64_tolerance(*references: Array) -> float:
    """The bound on the difference of two float64 computations of ``references``.

    ``FLOAT64_RTOL`` times the largest absolute reference value: the rounding of
    float64 through a network is ~1e-13 of that, float32 effects start at ~1e-7.
    """
    scale = max(max_abs(r) for r in references)
    assert scale > 0, 'the reference is all zeros: nothing would be compared'
    return FLOAT64_RTOL * scale


def assert_float64_close(ours: Array, ref: Array, what: str = '') -> float:
    """Assert two float64 results agree to ``float64_tolerance(ref)``; return the
    difference (for the test's report)."""
    for name, value in (('ours', ours), ('ref', ref)):
        if isinstance(value, torch.Tensor):
            assert value.dtype == torch.float64, (
                f'{what}: {name} is {value.dtype}, not float64: the comparison would '
                'be at float32 precision')
    diff, tol = max_abs_diff(ours, ref), float64_tolerance(ref)
    assert diff <= tol, f'{what}: max abs diff {diff:.3g} > {tol:.3g} (float64)'
    return diff


def float32_tolerance(ref32: Union[Array, Iterable[Array]],
                      ref64: Union[Array, Iterable[Array]],
                      factor: float = FLOAT32_FACTOR) -> float:
    """The bound on ``|other - ref32|`` for another float32 computation of the
    function whose float32 and float64 results on this machine are ``ref32`` and
    ``ref64``.

    ``factor`` times the larger of: the reference's own float32 rounding error (its max
    abs difference from ``ref64``, what this CPU's kernels give) and one float32 ulp of
    the values' scale (the least any float32 computation can be off by). It follows the
    machine: where the CPU rounds differently, both sides do.

    Args:
        ref32, ref64: The reference computed in float32 and in float64 (arrays, or
            sequences of arrays compared pairwise).
        factor (float): How much worse than the reference the other side may round.
    """
    if isinstance(ref32, (torch.Tensor, np.ndarray)):
        ref32, ref64 = [ref32], [ref64]
    ref32, ref64 = list(ref32), list(ref64)
    assert len(ref32) == len(ref64) > 0
    noise = max(max_abs_diff(a, b) for a, b in zip(ref32, ref64))
    scale = max(max_abs(b) for b in ref64)
    assert scale > 0, 'the reference is all zeros: nothing would be compared'
    return factor * max(noise, FLOAT32_EPS * scale)


def float64_copy(model: nn.Module, cfg=None) -> nn.Module:
    """A float64 copy of ``model`` for the comparisons above.

    ``.double()`` keeps constants that were rounded to float32 when the model was built:
    mmengine's data preprocessor stores the config's mean and std (``123.675`` becomes
    ``123.67500305``) as float32 buffers. With ``cfg`` (default: ``model.cfg``, where a
    test set it) they are taken from the config again, in float64.

    Args:
        model (nn.Module): The model (left unchanged).
        cfg (Config, optional): Its config.
    """
    import copy
    out = copy.deepcopy(model).double()
    cfg = cfg if cfg is not None else getattr(model, 'cfg', None)
    pre = getattr(out, 'data_preprocessor', None)
    pre_cfg = cfg.model.get('data_preprocessor') if cfg is not None else None
    if pre is not None and pre_cfg:
        for name in ('mean', 'std'):
            value = pre_cfg.get(name)
            buffer = getattr(pre, name, None)
            if value is not None and isinstance(buffer, torch.Tensor):
                setattr(pre, name, torch.tensor(value, dtype=torch.float64).view(
                    buffer.shape))
    return out
