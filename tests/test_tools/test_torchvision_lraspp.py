"""torchvision's lraspp_mobilenet_v3_large, converted, gives the same logits.

The reference is torchvision's model as its COCO_WITH_VOC_LABELS_V1 checkpoint builds
it (``weights=None, weights_backbone=None``: MobileNetV3-Large with ``dilated=True``, 21
classes) with random weights, since nothing can be downloaded here. To make a wrong or
missing mapping visible:

* every conv gets He-normal weights (torchvision's init makes the activations vanish
  through the backbone) and random biases, and every BatchNorm a random running mean,
  running variance, weight and bias;
* the gate's conv is then scaled so that its sigmoid is not saturated (the gate
  matters) and the high classifier so that both classifiers contribute alike.

The checkpoint goes through the command-line tool (in a subprocess) and is loaded with
``load_checkpoint(strict=True)`` into the model built from
``configs/lraspp_v3_large_torchvision_voc.py``. Both then get the same images: as a
normalized tensor (torchvision's ``out`` against our ``encode_decode``, which is what
mmseg's whole-image inference runs), as a uint8 image through each side's
preprocessing (``test_step``), and through mmseg's ``inference_model`` with the config's
test pipeline on an image whose short side is already 520.

The models are compared in float64 (weights drawn in float32, equal on both sides;
see mobilenet_tasks/testing.py for why): logits agree to float64 rounding. The
preprocessing is compared on its output: ours (in float64) is torchvision's formula
exactly, torchvision's own transforms (float32) agree with it to float32 rounding.
"""
import subprocess
import sys
from pathlib import Path
from runpy import run_path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.runner import load_checkpoint
from mmseg.structures import SegDataSample

from mobilenet_tasks.converters import (TORCHVISION_LRASPP_CONFIG,
                                        convert_torchvision_lraspp)
from mobilenet_tasks.utils.config import build_model, load_config
from mobilenet_tasks.testing import (FLOAT32_EPS, assert_float64_close,
                                     float64_tolerance, max_abs, max_abs_diff,
                                     randomize_)

torchvision = pytest.importorskip('torchvision')
from torchvision.models.segmentation import (  # noqa: E402
    LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / TORCHVISION_LRASPP_CONFIG
TOOL = ROOT / 'tools/model_converters/torchvision_lraspp.py'
WEIGHTS = LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
# torchvision's float32 normalization (x / 255 - mean) / std rounds three times, each
# by half an ulp of values below 2.7 (|x| <= 2.64 for ImageNet's mean and std): 4 ulps
# of the input's scale bound it.
INPUT_RTOL = 4 * FLOAT32_EPS


# -- fixtures -------------------------------------------------------------------------
def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """He-normal convs with random biases, random BN statistics and affine parameters,
    an unsaturated gate and balanced classifiers; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    num_bn = randomize_(model, gen)
    with torch.no_grad():
        assert num_bn > 40
        model.eval()
        head = model.classifier
        feats = model.backbone(torch.randn(1, 3, 96, 128, generator=gen))
        low, high = feats['low'], feats['high']
        head.scale[1].weight.mul_(1.5 / head.scale[1](head.scale[0](high)).std())
        high_logits = head.high_classifier(head.cbr(high) * head.scale(high))
        high_logits -= head.high_classifier.bias.view(1, -1, 1, 1)
        head.high_classifier.weight.mul_(head.low_classifier(low).std()
                                         / high_logits.std())
    return model


@pytest.fixture(scope='module')
def reference():
    torch.manual_seed(0)
    return randomize(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None))


@pytest.fixture(scope='module')
def ten_classes():
    """torchvision's LR-ASPP trained on 10 classes (a state dict)."""
    return lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                     num_classes=10).state_dict()


@pytest.fixture(scope='module')
def cli_run(reference, tmp_path_factory):
    """The tool, in a subprocess, on the reference's state dict."""
    tmp = tmp_path_factory.mktemp('lraspp')
    src, dst = tmp / 'lraspp_tv.pth', tmp / 'lraspp_ours.pth'
    torch.save(reference.state_dict(), src)
    proc = subprocess.run([sys.executable, str(TOOL), str(src), str(dst)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, dst


@pytest.fixture(scope='module')
def ours(cli_run):
    """Our model from the config, with the tool's checkpoint loaded strictly (as
    tools/test.py loads ``load_from``, but strict)."""
    model = build_model(str(CONFIG))
    load_checkpoint(model, str(cli_run[1]), map_location='cpu', strict=True,
                    logger='silent')
    model.cfg = load_config(str(CONFIG))  # what inference_model reads the pipeline from
    return model.eval()


def exact_input(rgb: torch.Tensor) -> torch.Tensor:
    """torchvision's normalization of a uint8 CHW RGB image, in float64."""
    mean = torch.tensor(WEIGHTS.transforms().mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(WEIGHTS.transforms().std, dtype=torch.float64).view(3, 1, 1)
    return (rgb.double() / 255 - mean) / std


def check_torchvision_input(x: torch.Tensor, exact: torch.Tensor) -> None:
    """torchvision's float32 transform output is ``exact`` to float32 rounding."""
    assert x.dtype == torch.float32 and x.shape == exact.shape
    assert max_abs_diff(x, exact) <= INPUT_RTOL * max_abs(exact)


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                                dtype=np.uint8)  # RGB


def sample(height: int, width: int) -> SegDataSample:
    shape = (height, width)
    return SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape))


def check_labels(ref_logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Our label map is torchvision's argmax, except where its top two (float64)
    logits are closer than float64 rounding (a tie may break either way)."""
    top2 = ref_logits.topk(2, dim=0).values
    differ = labels != ref_logits.argmax(0)
    assert not (differ & (top2[0] - top2[1] > 2 * float64_tolerance(ref_logits))).any()
    assert len(labels.unique()) >= 3  # not a constant map


# -- tests ----------------------------------------------------------------------------
def test_classes_and_size_are_the_configs():
    from mmseg.datasets import PascalVOCDataset
    from torchvision.models._meta import _VOC_CATEGORIES

    classes = PascalVOCDataset.METAINFO['classes']
    assert WEIGHTS.meta['categories'] == _VOC_CATEGORIES
    assert len(_VOC_CATEGORIES) == len(classes) == 21
    assert (_VOC_CATEGORIES[0], classes[0]) == ('__background__', 'background')
    assert _VOC_CATEGORIES[1:] == list(classes[1:])
    model = build_model(str(CONFIG))
    assert sum(p.numel() for p in model.parameters()) == WEIGHTS.meta['num_params']
    assert model.decode_head.num_classes == 21


def test_cli_output_loads_strictly(reference, cli_run, ours):
    stdout, dst = cli_run
    assert TORCHVISION_LRASPP_CONFIG in stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    meta = ckpt['meta']
    assert all(type(v) in (str, int) for v in meta.values()), meta
    assert meta['source_arch'] == 'lraspp_mobilenet_v3_large'
    assert meta['config'] == TORCHVISION_LRASPP_CONFIG and meta['notes'] == ''
    assert meta['num_classes'] == 21 and meta['num_tensors'] == len(ckpt['state_dict'])
    assert 'output_stride=16, out_indices=(4, 16)' in meta['backbone']
    # the tool's output is the function's, and is what `ours` holds (loaded strictly)
    expected = convert_torchvision_lraspp(reference.state_dict())
    assert ckpt['state_dict'].keys() == expected.keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert len(expected) == len(reference.state_dict())


def test_checkpoint_without_num_batches_tracked(reference):
    """Older checkpoints have no BN ``num_batches_tracked``: ours start at 0."""
    sd = {k: v for k, v in reference.state_dict().items()
          if not k.endswith('num_batches_tracked')}
    converted = convert_torchvision_lraspp(sd)
    expected = convert_torchvision_lraspp(reference.state_dict())
    assert converted.keys() == expected.keys()
    assert converted['decode_head.cbr.bn.num_batches_tracked'] == 0


@pytest.mark.parametrize('height, width', [(96, 128), (83, 121)])
def test_logits_match(reference64, ours64, height, width):
    """The same normalized image: torchvision's ``out`` (upsampled to the input) and
    our ``encode_decode`` (whole-image inference: the head's logits resized to
    ``img_shape``)."""
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    with torch.no_grad():
        ref = reference64(x)['out']
        out = ours64.encode_decode(x, [sample(height, width).metainfo])
    assert out.shape == ref.shape == (1, 21, height, width)
    assert ref.std() > 1  # logits that a wrong tensor would change
    diff = assert_float64_close(out, ref, 'logits')
    print(f'{height}x{width}: logits {diff:.2e} (scale {max_abs(ref):.1f}, float64)')


def test_prediction_matches_from_uint8_image(reference64, ours64):
    """A uint8 image through each side's preprocessing (torchvision's weights'
    transforms without their resize; our data preprocessor) and our ``test_step``: the
    inputs agree (ours in float64 exactly, torchvision's float32 to its rounding), our
    logits are torchvision's on that input, and our label map is its argmax."""
    height, width = 83, 121
    rgb = torch.from_numpy(random_image(height, width, seed=0)).permute(2, 0, 1)
    exact = exact_input(rgb)
    check_torchvision_input(WEIGHTS.transforms(resize_size=None)(rgb), exact)
    # mmseg's pipeline gives BGR (the data preprocessor converts to RGB)
    data = dict(inputs=[rgb.flip(0)], data_samples=[sample(height, width)])
    with torch.no_grad():
        ours_x = ours64.data_preprocessor(data, False)['inputs']
        ref = reference64(exact[None])['out'][0]
        result = ours64.test_step(data)[0]
    assert_float64_close(ours_x[0], exact, 'preprocessed input')
    assert_float64_close(result.seg_logits.data, ref, 'test_step logits')
    check_labels(ref, result.pred_sem_seg.data[0])


def test_inference_model_matches_torchvision_transforms(reference64, ours64):
    """mmseg's ``inference_model`` (the config's test pipeline) against torchvision's
    ``weights.transforms()`` (short side resized to 520) on a 520x600 image: neither
    resize changes it (torchvision's output is the normalized image to float32
    rounding), the rest is the same."""
    from mmseg.apis import inference_model

    img = random_image(520, 600, seed=1)
    rgb = torch.from_numpy(img).permute(2, 0, 1)
    exact = exact_input(rgb)
    check_torchvision_input(WEIGHTS.transforms()(rgb), exact)
    with torch.no_grad():
        ref = reference64(exact[None])['out'][0]
        result = inference_model(ours64, np.ascontiguousarray(img[..., ::-1]))  # BGR
    assert result.metainfo['img_shape'] == (520, 600)
    assert_float64_close(result.seg_logits.data, ref, 'inference_model logits')
    check_labels(ref, result.pred_sem_seg.data[0])


def test_other_models_are_refused(reference, ten_classes):
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.segmentation.lraspp import (LRASPPHead,
                                                        _lraspp_mobilenetv3)

    sd = reference.state_dict()
    # another num_classes: refused, with what to set; accepted when asked for
    with pytest.raises(ValueError, match=r'classifier\.low_classifier\.weight predicts '
                       r'10 classes.*num_classes=10 \(--num-classes 10\).*'
                       r'model\.decode_head\.num_classes=10'):
        convert_torchvision_lraspp(ten_classes)
    converted, info = convert_torchvision_lraspp(ten_classes, num_classes=10,
                                                 return_info=True)
    assert info.config is None and 'num_classes=10' in info.notes[0]
    model = build_model(str(CONFIG), {'model.decode_head.num_classes': 10})
    model.load_state_dict(converted, strict=True)
    # another inter_channels
    head = LRASPPHead(40, 960, 21, 64).state_dict()
    other = {k: v for k, v in sd.items() if k.startswith('backbone.')}
    other.update({f'classifier.{k}': v for k, v in head.items()})
    with pytest.raises(ValueError, match=r'classifier\.cbr\.0\.weight has 64 output '
                       r'channels.*model\.decode_head\.channels=64'):
        convert_torchvision_lraspp(other)
    # a head that does not fit the backbone
    bad = dict(sd, **{'classifier.low_classifier.weight': torch.zeros(21, 24, 1, 1)})
    with pytest.raises(ValueError, match=r'classifier\.low_classifier\.weight has '
                       r'shape \(21, 24, 1, 1\), expected \(21, 40, 1, 1\)'):
        convert_torchvision_lraspp(bad)
    # the reduced tail (torchvision's builder has none, its LRASPP takes one)
    reduced = _lraspp_mobilenetv3(mobilenet_v3_large(dilated=True, reduced_tail=True),
                                  21).state_dict()
    with pytest.raises(ValueError, match='reduced tail'):
        convert_torchvision_lraspp(reduced)
    # other torchvision models
    with pytest.raises(ValueError, match='not a torchvision LR-ASPP.*classifier: '
                       'convert it with tools/model_converters/torchvision_mobilenet'):
        convert_torchvision_lraspp(mobilenet_v3_large().state_dict())
    with pytest.raises(ValueError, match='SSDLite'):
        convert_torchvision_lraspp({'backbone.features.0.0.0.weight': torch.zeros(1)})
    # a missing tensor (head, backbone), a stray tensor
    for key in ('classifier.cbr.1.running_var', 'backbone.5.block.1.1.running_var'):
        missing = {k: v for k, v in sd.items() if k != key}
        with pytest.raises(ValueError, match=key.replace('.', r'\.')):
            convert_torchvision_lraspp(missing)
    stray = dict(sd, **{'classifier.extra.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r'have no place.*classifier\.extra\.weight'):
        convert_torchvision_lraspp(stray)
    stray = dict(sd, **{'aux_classifier.0.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r'aux_classifier\.0\.weight.*DeepLabV3'):
        convert_torchvision_lraspp(stray)


def test_cli_reports_errors_and_converts_other_classes(ten_classes, tmp_path, capsys):
    main = run_path(str(TOOL))['main']
    src, dst = tmp_path / 'ten.pth', tmp_path / 'out.pth'
    torch.save(ten_classes, src)
    with pytest.raises(SystemExit, match='error: classifier.low_classifier.weight '
                       'predicts 10 classes'):
        main([str(src), str(dst)])
    assert not dst.exists()
    main([str(src), str(dst), '--num-classes', '10'])
    assert 'note:        No config here builds' in capsys.readouterr().out
    assert torch.load(dst, weights_only=True)['meta']['num_classes'] == 10
