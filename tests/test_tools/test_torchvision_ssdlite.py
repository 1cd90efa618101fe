"""torchvision's ssdlite320_mobilenet_v3_large, converted, gives the same detections.

The reference is torchvision's model as its COCO checkpoint builds it
(``weights=None, weights_backbone=None``: reduced tail, BN eps 0.001, 91 labels) with
random weights, since nothing can be downloaded here. To make a wrong or missing
mapping visible:

* every conv gets He-normal weights (torchvision's own init, normal std 0.03, makes the
  activations vanish through the backbone) and random biases, and every BatchNorm a
  random running mean, running variance, weight and bias;
* the class conv's 10 COCO "N/A" labels (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
  get zero weights and bias -30 on every anchor: a trained torchvision model never sees
  an N/A box, so their logits are very negative; the converter drops them, which
  changes torchvision's softmax over 91 logits only by ``exp(-30)`` relative terms.

The checkpoint goes through the command-line tool (in a subprocess) and is loaded with
``load_checkpoint(strict=True)`` into the model built from
``configs/ssdlite_v3_large_reduced_torchvision_coco.py``. Each model then gets the same
uint8 image through its own preprocessing (torchvision: ``model([tensor])``; ours: the
config's test pipeline and ``test_step``, what ``mmdet.apis.inference_detector`` runs),
once 320x320 (no resize) and once 240x400 (resized to 320x320 and mapped back).
torchvision's ``topk_candidates`` is raised so that it keeps every candidate, as the
config's ``nms_pre`` does: both then reduce to "every (anchor, class) above 0.001 ->
batched NMS 0.55 -> top 300" (the config explains the difference at torchvision's
default of 300).

Both models run in float64 (their weights, drawn in float32, are equal; see
mobilenet_tasks/testing.py for why): the head outputs agree to float64 rounding, and
the detections to what the one float32 constant each library keeps, its anchors (built
in float32 in the generators' constructors), allows: ``box_tolerance``.
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint

from mobilenet_tasks.converters import (COCO_CATEGORY_IDS, TORCHVISION_SSDLITE_CONFIG,
                                        convert_torchvision_ssdlite)
from mobilenet_tasks.converters.torchvision_ssdlite import COCO_UNUSED_IDS
from mobilenet_tasks.utils.config import load_config
from mobilenet_tasks.testing import (FLOAT32_EPS, assert_float64_close,
                                     float64_tolerance, max_abs, max_abs_diff,
                                     randomize_)

torchvision = pytest.importorskip('torchvision')
from torchvision.models.detection import ssdlite320_mobilenet_v3_large  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / TORCHVISION_SSDLITE_CONFIG
TOOL = ROOT / 'tools/model_converters/torchvision_ssdlite.py'
# Anchors: both generators compute them once in float32 (torchvision's
# DefaultBoxGenerator its width/height pairs, mmdet's SSDAnchorGenerator its base
# anchors), from the same formula in another order. Elementwise float32 arithmetic
# (+, *, /, sqrt) is correctly rounded on every CPU, so the anchors do not depend on the
# machine; a coordinate (< 512 px) takes a few roundings in each library: 4 float32
# ulps of 512 px bound their difference (measured: 1.1e-5 px).
ANCHOR_TOL = 4 * FLOAT32_EPS * 512


# -- fixtures -------------------------------------------------------------------------
def randomize(model: nn.Module, seed: int = 1) -> nn.Module:
    """He-normal convs with random biases, random BN statistics and affine parameters,
    N/A labels at zero weight and bias -30; eval mode, keeps every candidate."""
    gen = torch.Generator().manual_seed(seed)
    num_bn = randomize_(model, gen)
    with torch.no_grad():
        for block in model.head.classification_head.module_list:
            conv = block[1]
            conv.weight.view(6, 91, -1)[:, list(COCO_UNUSED_IDS)] = 0
            conv.bias.view(6, 91)[:, list(COCO_UNUSED_IDS)] = -30
    assert num_bn > 60
    model.eval()
    model.topk_candidates = 10**9  # no per-class truncation (ours: nms_pre=200000)
    return model


@pytest.fixture(scope='module')
def reference():
    torch.manual_seed(0)
    return randomize(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))


@pytest.fixture(scope='module')
def cli_run(reference, tmp_path_factory):
    """The tool, in a subprocess, on the reference's state dict."""
    tmp = tmp_path_factory.mktemp('ssdlite')
    src, dst = tmp / 'ssdlite_tv.pth', tmp / 'ssdlite_ours.pth'
    torch.save(reference.state_dict(), src)
    proc = subprocess.run([sys.executable, str(TOOL), str(src), str(dst)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, dst


@pytest.fixture(scope='module')
def ours(cli_run):
    """Our model from the config, with the tool's checkpoint loaded strictly."""
    cfg = load_config(str(CONFIG))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(cli_run[1]), map_location='cpu', strict=True,
                    logger='silent')
    model.cfg = cfg  # what inference_detector reads the test pipeline from
    return model.eval()


@pytest.fixture
def float64_nms(monkeypatch):
    """mmcv's CPU NMS op takes float32 only. In float64, the same greedy NMS (IoU
    above the threshold suppresses, offset 0) runs through ``torchvision.ops.nms``,
    torchvision's own; every call also checks that mmcv's op and torchvision's keep
    the same boxes of the inputs rounded to float32 (a tie or an IoU at the threshold
    may break another way in float32 than in float64, so not against ``keep``)."""
    import importlib
    mmcv_nms = importlib.import_module('mmcv.ops.nms')  # the module, not the function
    real = mmcv_nms.ext_module.nms

    def nms(bboxes, scores, iou_threshold, offset):
        if bboxes.dtype != torch.float64:
            return real(bboxes, scores, iou_threshold=iou_threshold, offset=offset)
        assert offset == 0
        keep = torchvision.ops.nms(bboxes, scores, iou_threshold)
        # the same inputs in float32 through both ops: the same boxes kept
        b32, s32 = bboxes.float(), scores.float()
        ours32 = real(b32, s32, iou_threshold=iou_threshold, offset=offset)
        theirs32 = torchvision.ops.nms(b32, s32, iou_threshold)
        assert set(ours32.tolist()) == set(theirs32.tolist()), 'mmcv NMS != torchvision'
        return keep

    monkeypatch.setattr(mmcv_nms.ext_module, 'nms', nms)


def random_image(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3),
                                                dtype=np.uint8)  # RGB


def our_test_input(ours, img_bgr: np.ndarray) -> torch.Tensor:
    """What the config's test pipeline hands to the model (resized, BGR, 0-255)."""
    from mmdet.utils import get_test_pipeline_cfg
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    pipeline = get_test_pipeline_cfg(ours.cfg.copy())
    pipeline[0].type = 'mmdet.LoadImageFromNDArray'  # as inference_detector does
    with DefaultScope.overwrite_default_scope('mmdet'):
        return Compose(pipeline)(dict(img=img_bgr, img_id=0))['inputs']


def run_both(reference, ours, img_rgb: np.ndarray, resized_rgb=None):
    """Detections of both, each through its own preprocessing and postprocessing, in
    the models' dtype. With ``resized_rgb`` (0-255, the model's input size),
    torchvision's resize is replaced by it (the rest of its transform, the model and
    the mapping back to ``img_rgb``'s size are its own)."""
    from mmdet.apis import inference_detector
    dtype = next(reference.parameters()).dtype
    transform = reference.transform
    if resized_rgb is not None:
        transform.resize = lambda image, target: (
            transform.normalize(resized_rgb.to(dtype) / 255), target)
    try:
        with torch.no_grad():
            ref = reference([torch.from_numpy(img_rgb).permute(2, 0, 1).to(dtype)
                             / 255])[0]
            # mmdet's pipeline expects BGR (the data preprocessor converts to RGB)
            out = inference_detector(ours, np.ascontiguousarray(img_rgb[..., ::-1]))
    finally:
        transform.__dict__.pop('resize', None)
    assert out.pred_instances.bboxes.dtype == ref['boxes'].dtype == dtype
    return ref, out.pred_instances


def box_tolerance(reference, img_rgb: np.ndarray, scale: float = 1.0) -> float:
    """How far apart float64 boxes of the two may be: the anchors' float32 rounding
    (ANCHOR_TOL) carried through the box decoding. A box corner is
    ``c + 0.1 * d_c * s -/+ s * exp(0.2 * d_s) / 2`` of an anchor's centre c and size s
    (torchvision's and mmdet's coder, variances 0.1 / 0.2): an error e in c and s
    moves it by at most ``e * (1 + 0.1 |d_c| + exp(0.2 d_s) / 2)``; boxes mapped back
    to the original image are stretched by ``scale``; 2x for the round trip through
    corner / centre form."""
    with torch.no_grad():
        x = torch.from_numpy(img_rgb).permute(2, 0, 1).to(
            next(reference.parameters()).dtype) / 255
        images, _ = reference.transform([x])
        deltas = reference.head(list(reference.backbone(images.tensors).values()))[
            'bbox_regression'][0]
    d_c, d_s = deltas[:, :2].abs().max().item(), deltas[:, 2:].max().item()
    d_s = min(d_s, 5 * np.log(1000 / 16))  # both coders clamp 0.2 * d_s at log(1000/16)
    gain = 1 + 0.1 * d_c + np.exp(0.2 * d_s) / 2
    return 2 * ANCHOR_TOL * gain * scale


def match_detections(ref: dict, out, height: int, width: int, box_tol: float) -> dict:
    """Pair every torchvision detection with one of ours (same count, label mapped to
    the COCO id, score within float64 rounding and box within ``box_tol`` px); return
    the max differences."""
    # scores are softmaxes of float64 logits that agree to float64 rounding
    score_tol = float64_tolerance(ref['scores'])
    ids = torch.tensor(COCO_CATEGORY_IDS)
    assert len(ref['boxes']) == len(out.bboxes) == 300, (len(ref['boxes']),
                                                        len(out.bboxes))
    ref_order = ref['scores'].argsort(descending=True)
    our_order = out.scores.argsort(descending=True)
    r_boxes, r_scores = ref['boxes'][ref_order], ref['scores'][ref_order]
    r_labels = ref['labels'][ref_order]
    o_boxes, o_scores = out.bboxes[our_order], out.scores[our_order]
    o_labels = ids[out.labels[our_order]]
    # Sorted by score both are in the same order, except that detections whose scores
    # differ by less than the tolerance may swap: look for the partner among those.
    unmatched = list(range(len(o_boxes)))
    box_diff = score_diff = 0.0
    for i in range(len(r_boxes)):
        partner = None
        for j in unmatched:
            if (abs(o_scores[j] - r_scores[i]) <= score_tol
                    and o_labels[j] == r_labels[i]
                    and (o_boxes[j] - r_boxes[i]).abs().max() <= box_tol):
                partner = j
                break
            if o_scores[j] < r_scores[i] - score_tol:
                break
        assert partner is not None, (
            f'torchvision detection {i} (label {r_labels[i].item()}, score '
            f'{r_scores[i].item():.6f}, box {r_boxes[i].tolist()}) has no match; ours '
            f'at {i}: label {o_labels[i].item()}, score {o_scores[i].item():.6f}, box '
            f'{o_boxes[i].tolist()}')
        unmatched.remove(partner)
        box_diff = max(box_diff, (o_boxes[partner] - r_boxes[i]).abs().max().item())
        score_diff = max(score_diff, abs(o_scores[partner] - r_scores[i]).item())
    # The comparison is meaningful: many classes, spread scores and boxes.
    assert len(r_labels.unique()) >= 20
    assert r_scores.max() - r_scores.min() > 0.01
    assert r_boxes[:, 0::2].max() > 0.5 * width
    assert r_boxes[:, 1::2].max() > 0.5 * height
    print(f'{height}x{width}: {len(r_boxes)} detections, max |box diff| '
          f'{box_diff:.2e} px (bound {box_tol:.2e}), max |score diff| {score_diff:.2e}')
    return dict(box=box_diff, score=score_diff)


# -- tests ----------------------------------------------------------------------------
def test_coco_category_ids_are_mmdet_classes():
    from mmdet.datasets import CocoDataset
    from torchvision.models._meta import _COCO_CATEGORIES

    classes = CocoDataset.METAINFO['classes']
    assert len(COCO_CATEGORY_IDS) == len(classes) == 80
    assert [_COCO_CATEGORIES[i] for i in COCO_CATEGORY_IDS] == list(classes)
    assert [i for i, name in enumerate(_COCO_CATEGORIES)
            if name == 'N/A'] == list(COCO_UNUSED_IDS)


def test_cli_output_loads_strictly(reference, cli_run, ours):
    stdout, dst = cli_run
    assert TORCHVISION_SSDLITE_CONFIG in stdout
    ckpt = torch.load(dst, map_location='cpu', weights_only=True)
    meta = ckpt['meta']
    assert all(type(v) in (str, int) for v in meta.values()), meta
    assert meta['source_arch'] == 'ssdlite320_mobilenet_v3_large'
    assert meta['config'] == TORCHVISION_SSDLITE_CONFIG
    assert meta['num_classes'] == 80 and meta['num_tensors'] == len(ckpt['state_dict'])
    assert "reduced_tail=True" in meta['backbone']
    # the tool's output is the function's, and is what `ours` holds (loaded strictly)
    expected = convert_torchvision_ssdlite(reference.state_dict())
    assert ckpt['state_dict'].keys() == expected.keys() == ours.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert ours.bbox_head.prior_generator.num_base_priors == [6] * 6


def test_head_outputs_and_anchors_match(reference64, ours64):
    """Before any post-processing: per anchor, our 80 class logits + background are
    torchvision's at COCO_CATEGORY_IDS + [0], and the box deltas and anchors agree."""
    x = torch.from_numpy(random_image(320, 320, seed=3)).permute(2, 0, 1).double()
    with torch.no_grad():
        images, _ = reference64.transform([x / 255])
        feats = list(reference64.backbone(images.tensors).values())
        ref_out = reference64.head(feats)
        ref_anchors = reference64.anchor_generator(images, feats)[0]
        data = ours64.data_preprocessor(dict(inputs=[x.flip(0)]), False)  # BGR in
        cls_scores, bbox_preds = ours64.bbox_head(ours64.extract_feat(data['inputs']))
    sizes = [c.shape[-2:] for c in cls_scores]
    our_cls = torch.cat([c[0].permute(1, 2, 0).reshape(-1, 81) for c in cls_scores])
    our_reg = torch.cat([b[0].permute(1, 2, 0).reshape(-1, 4) for b in bbox_preds])
    our_anchors = torch.cat(ours64.bbox_head.prior_generator.grid_priors(
        sizes, dtype=torch.float64, device='cpu'))
    ref_cls = ref_out['cls_logits'][0][:, list(COCO_CATEGORY_IDS) + [0]]
    ref_reg = ref_out['bbox_regression'][0]
    assert our_cls.shape == ref_cls.shape == (3234, 81)
    assert ref_cls.std() > 1 and ref_reg.std() > 0.5
    cls_diff = assert_float64_close(our_cls, ref_cls, 'class logits')
    reg_diff = assert_float64_close(our_reg, ref_reg, 'box deltas')
    anchor_diff = max_abs_diff(our_anchors, ref_anchors)
    print(f'class logits {cls_diff:.2e} (max {max_abs(ref_cls):.1f}), deltas '
          f'{reg_diff:.2e}, anchors {anchor_diff:.2e} px (bound {ANCHOR_TOL:.2e})')
    assert anchor_diff <= ANCHOR_TOL
    # the dropped N/A logits really are negligible in torchvision's softmax
    assert (ref_out['cls_logits'][0][:, list(COCO_UNUSED_IDS)] == -30).all()


def test_detections_match_square_image(reference64, ours64, float64_nms):
    """320x320: no resize on either side."""
    img = random_image(320, 320, seed=0)
    ref, out = run_both(reference64, ours64, img)
    match_detections(ref, out, 320, 320, box_tolerance(reference64, img))
    # zero-size (clipped) boxes are detections in torchvision, and with
    # min_bbox_size=-1 in ours; mmdet's usual min_bbox_size=0 would drop them
    ref_wh = ref['boxes'][:, 2:] - ref['boxes'][:, :2]
    our_wh = out.bboxes[:, 2:] - out.bboxes[:, :2]
    num_zero = int((ref_wh <= 0).any(1).sum())
    assert num_zero > 0 and int((our_wh <= 0).any(1).sum()) == num_zero
    assert ours64.cfg.model.test_cfg.min_bbox_size == -1


def test_detections_match_non_square_image(reference64, ours64, float64_nms):
    """240x400: both resize to 320x320 (torchvision: torch bilinear on the float image;
    ours: cv2 bilinear on the image loaded as float32, see the config) and map the
    boxes back to 240x400.

    The two resizes agree to float32 rounding (cv2 resizes float32 images with float32
    coefficients): checked on the resized images. The detections are then compared on
    the same resized image, in float64, so that the input's float32 rounding, which a
    random network amplifies, stays out of the box comparison."""
    img = random_image(240, 400, seed=1)
    ours_resized = our_test_input(ours64, np.ascontiguousarray(img[..., ::-1]))
    assert ours_resized.dtype == torch.float32 and ours_resized.shape == (3, 320, 320)
    ours_resized = ours_resized.flip(0).double()  # RGB
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None].double(), size=(320, 320),
        mode='bilinear', align_corners=False)[0]  # torchvision's resize, float64
    # each output pixel is a weighted sum of 4 pixels <= 255 with float32 weights and
    # float32 sums: a few float32 roundings of 255
    resize_diff = max_abs_diff(ours_resized, theirs)
    print(f'resized inputs differ by {resize_diff:.2e} (of 255)')
    assert resize_diff <= 8 * FLOAT32_EPS * 255
    ref, out = run_both(reference64, ours64, img, resized_rgb=ours_resized)
    match_detections(ref, out, 240, 400,
                     box_tolerance(reference64, img, scale=400 / 320))
    assert ours64.cfg.test_dataloader.dataset.pipeline[0]['to_float32'] is True


def test_other_models_are_refused(reference):
    sd = reference.state_dict()
    # torchvision's SSDLite trained on 20 classes + background
    other = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                          num_classes=21).state_dict()
    with pytest.raises(ValueError, match=r'predicts 21 classes per anchor.*91'):
        convert_torchvision_ssdlite(other)
    converted = convert_torchvision_ssdlite(other, class_ids=range(1, 21))
    assert converted['bbox_head.cls_convs.0.1.weight'].shape[0] == 6 * 21
    with pytest.raises(ValueError, match='class_ids must be distinct labels'):
        convert_torchvision_ssdlite(sd, class_ids=[0, 1])
    # a MobileNetV3 classifier
    classifier = torchvision.models.mobilenet_v3_large().state_dict()
    with pytest.raises(ValueError, match='not a torchvision SSDLite.*classifier'):
        convert_torchvision_ssdlite(classifier)
    # a missing tensor, a stray tensor
    missing = {k: v for k, v in sd.items() if k != 'backbone.extra.1.1.1.running_var'}
    with pytest.raises(ValueError, match='backbone.extra.1.1.1.running_var'):
        convert_torchvision_ssdlite(missing)
    stray = dict(sd, **{'head.regression_head.module_list.0.2.weight': torch.zeros(1)})
    with pytest.raises(ValueError, match=r'head\.regression_head\.module_list\.0\.2'):
        convert_torchvision_ssdlite(stray)


def test_cli_reports_errors(tmp_path):
    from runpy import run_path
    main = run_path(str(TOOL))['main']
    src = tmp_path / 'classifier.pth'
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), src)
    with pytest.raises(SystemExit, match='error: not a torchvision SSDLite'):
        main([str(src), str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()
