"""Models that follow their input: SSDLite anchors for the image the network sees,
the LR-ASPP pooling window derived from the training crop (issue 14)."""
from pathlib import Path

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

from mobilenet_tasks.deployment.detection_graph import DetectorPostprocessed
from mobilenet_tasks.models.decode_heads import LRASPPHead
from mobilenet_tasks.models.decode_heads.lraspp_head import crop_pool_kernel
from mobilenet_tasks.utils.config import build_model, load_config

ROOT = Path(__file__).resolve().parents[2]
SSD_COCO = str(ROOT / 'configs/ssdlite_v3_large_coco.py')  # anchors and Resize: 320
ROW_8 = str(ROOT / 'configs/lraspp_v3_large_cityscapes.py')
# mmdet's own ssdlite_mobilenetv2 anchors: pixel strides and sizes for 320x320 inputs
MMDET_SSD_ANCHORS = dict(
    type='SSDAnchorGenerator', scale_major=False,
    strides=[16, 32, 64, 107, 160, 320], ratios=[[2, 3]] * 6,
    min_sizes=[48, 100, 150, 202, 253, 304], max_sizes=[100, 150, 202, 253, 304, 320])


def _ssdlite(anchor_input_size=320, **head):
    head = dict(anchor_generator=dict(input_size=anchor_input_size), **head)
    return build_model(SSD_COCO, dict(model=dict(bbox_head=head)))


def _batch(size, n=2):
    """Images of ``size`` x ``size`` with two boxes each, as a dataloader gives them."""
    samples = []
    for _ in range(n):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size),
                                             ori_shape=(size, size),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 12., 60., 70.], [50., 40., 120., 110.]])
            * size / 128, labels=torch.tensor([3, 1]))
        samples.append(sample)
    inputs = [torch.randint(0, 255, (3, size, size), dtype=torch.uint8)
              for _ in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def _spy_priors(model):
    """Record (input shape, anchors) of each ``priors_for`` call of the head."""
    calls, real = [], model.bbox_head.priors_for

    def spy(featmap_sizes, input_shape, *args, **kwargs):
        priors = real(featmap_sizes, input_shape, *args, **kwargs)
        calls.append((tuple(input_shape), torch.cat(priors)))
        return priors
    model.bbox_head.priors_for = spy
    return calls


@pytest.mark.parametrize('built, seen', [(320, 128), (128, 320)])
def test_ssdlite_anchors_are_those_of_the_input_it_sees(built, seen):
    """Built for one size (or a child config that changed only the generator's
    input_size), run on another: the loss and the predictions use the anchors a
    model built for the size it sees has."""
    model = _ssdlite(built)
    reference = _ssdlite(seen)
    calls = _spy_priors(model)
    data = model.data_preprocessor(_batch(seen), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(sum(v) if isinstance(v, list) else v)
               for v in losses.values())
    model.eval()
    with torch.no_grad():
        model.test_step(_batch(seen))
    sizes = [(-(-seen // 16), ) * 2]
    for _ in range(5):
        sizes.append((-(-sizes[-1][0] // 2), ) * 2)
    expected = torch.cat(reference.bbox_head.prior_generator.grid_priors(
        sizes, device='cpu'))
    assert [shape for shape, _ in calls] == [(seen, seen)] * 2  # loss, predict
    for _, anchors in calls:
        assert torch.equal(anchors, expected)
    # the values: level 0's first box is scale 0.1 on the first 16 px cell; the last
    # level's scale-0.95 box is centred on the image; all centres average to the middle
    c = seen / 2
    torch.testing.assert_close(expected[0], torch.tensor([8 - .05 * seen] * 2
                                                         + [8 + .05 * seen] * 2))
    torch.testing.assert_close(expected[-6], torch.tensor([c - .475 * seen] * 2
                                                          + [c + .475 * seen] * 2))
    centres = (expected[:, :2] + expected[:, 2:]) / 2
    torch.testing.assert_close(centres.mean(0), torch.tensor([c, c]))


def test_hand_made_batch_gets_batch_input_shape_and_export_gets_its_size():
    model = _ssdlite(320).eval()
    calls = _spy_priors(model)
    sample = DetDataSample(metainfo=dict(img_shape=(96, 96), scale_factor=(1., 1.)))
    with torch.no_grad():
        model.predict(torch.rand(1, 3, 128, 128), [sample])
    assert sample.metainfo['batch_input_shape'] == (128, 128)
    assert calls[0][0] == (128, 128)
    # the ONNX graph's constant anchors are those of the exported size
    graph = DetectorPostprocessed(model, (128, 128))
    assert torch.equal(graph.priors, calls[0][1])
    wrong = DetDataSample(metainfo=dict(batch_input_shape=(320, 320)))
    with pytest.raises(ValueError, match=r"batch_input_shape is \(320, 320\), but the "
                                         r'batch tensor is 128x128'):
        model.predict(torch.rand(1, 3, 128, 128), [wrong])


def test_generator_fixed_to_one_size_stops_with_what_to_change():
    cfg = load_config(SSD_COCO)
    cfg.model.bbox_head.anchor_generator = MMDET_SSD_ANCHORS
    model = build_model(cfg)
    assert not model.bbox_head.follows_input
    data = model.data_preprocessor(_batch(320), True)  # the size it was made for
    assert torch.isfinite(model(**data, mode='loss')['loss_bbox'][0])
    data = model.data_preprocessor(_batch(128), True)
    with pytest.raises(ValueError) as error:
        model(**data, mode='loss')
    assert str(error.value) == (
        "SSDLiteHead: the anchors of SSDAnchorGenerator are fixed to one input size "
        "and do not fit the 128x128 input (batch_input_shape): level 3's 1x1 feature "
        "map at stride 107 px spans 107x107 px, so they would cover only part of each "
        "image, or spill over it. Use anchor_generator=dict(type='mobilenet_tasks."
        "SSDLiteAnchorGenerator'), whose anchors follow the input size, or set the "
        "generator's strides and sizes for 128x128 inputs.")


def test_stock_head_with_our_generator_stops_with_what_to_change():
    cfg = load_config(SSD_COCO)
    cfg.model.bbox_head.type = 'SSDHead'  # mmdet's: asks for anchors without a size
    model = build_model(cfg)
    data = model.data_preprocessor(_batch(128), True)
    with pytest.raises(ValueError) as error:
        model(**data, mode='loss')
    assert str(error.value) == (
        "SSDLite: the anchors of SSDLiteAnchorGenerator are for 320x320 inputs, but "
        "the network sees 128x128 ones (batch_input_shape): they would cover only "
        "part of each image, or spill over it. Use bbox_head=dict(type='mobilenet_"
        "tasks.SSDLiteHead') with anchor_generator=dict(type='mobilenet_tasks."
        "SSDLiteAnchorGenerator'), whose anchors follow the input size, or resize "
        "every image to 320x320 (the pipeline's Resize scale).")


def _tf_scale_dimension(dim, scale):
    """TF DeepLab ``model.scale_dimension`` for a Python number."""
    return int((float(dim) - 1.0) * scale + 1.0)


@pytest.mark.parametrize('crop, output_stride', [
    ((769, 769), 16),    # the paper's Cityscapes crops: 49x49
    ((512, 1024), 16),   # mmseg's Cityscapes crops: 32x64
    ((769, 769), 32),    # TF DeepLab's MobileNetV3 Cityscapes flags (OS 32): 25x25
    ((513, 513), 16),
    ((257, 257), 32),
])
def test_crop_pool_kernel_is_tf_deeplabs(crop, output_stride):
    expected = tuple(_tf_scale_dimension(c, 1. / output_stride) for c in crop)
    assert crop_pool_kernel(crop, output_stride) == expected
    head = LRASPPHead(in_channels=(8, 16), channels=12, num_classes=5,
                      pool_kernel='crop', crop_size=crop, output_stride=output_stride)
    assert head.pool_kernel == expected
    assert head.pool_stride == (16, 20)  # TF's stride is a flag, not derived


def _seg_samples(n, h, w):
    samples = []
    for _ in range(n):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, h, w)))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(sample)
    return samples


def test_lraspp_at_512x1024_crops_pools_each_crops_whole_map():
    head = LRASPPHead(in_channels=(8, 16), channels=12, num_classes=5,
                      pool_kernel='crop', crop_size=(512, 1024), output_stride=16)
    assert head.pool_kernel == (32, 64)
    low, high = torch.randn(2, 8, 64, 128), torch.randn(2, 16, 32, 64)  # 512x1024 in
    with torch.no_grad():
        gate = head.gate(high)
        whole = torch.sigmoid(head.scale_conv(high.mean((2, 3), keepdim=True)))
    torch.testing.assert_close(gate, whole.expand_as(gate))
    losses = head.loss([low, high], _seg_samples(2, 512, 1024), dict())
    assert torch.isfinite(losses['loss_ce'])
    # at 1024x2048 (a 64x128 map) the 32x64 window slides with stride (16, 20)
    big = torch.randn(1, 16, 64, 128)
    assert torch.nn.functional.avg_pool2d(big, (32, 64), (16, 20)).shape[2:] == (3, 4)
    assert head.gate(big).shape == (1, 12, 64, 128)


def test_lraspp_config_at_512x1024_crops_and_row_8_unchanged():
    row8 = build_model(ROW_8, init_weights=False).decode_head
    assert (row8.pool_kernel, row8.pool_stride, row8.crop_size) == ((49, 49),
                                                                   (16, 20), None)
    crop = (512, 1024)  # how a fine-tuning config at mmseg's crops sets the head
    cfg = load_config(ROW_8, dict(model=dict(
        data_preprocessor=dict(size=crop),
        decode_head=dict(pool_kernel='crop', crop_size=crop, output_stride=16))))
    model = build_model(cfg, init_weights=False)
    assert model.decode_head.pool_kernel == (32, 64)
    paper = build_model(ROW_8, dict(model=dict(decode_head=dict(
        pool_kernel='crop', crop_size=(769, 769), output_stride=16))), False)
    assert paper.decode_head.pool_kernel == row8.pool_kernel
    assert paper.decode_head.state_dict().keys() == row8.state_dict().keys()


def test_lraspp_crop_messages():
    base = dict(in_channels=(8, 16), channels=12, num_classes=5)
    head = LRASPPHead(pool_kernel='crop', crop_size=(512, 512), output_stride=16,
                      **base)
    low, high = torch.randn(1, 8, 97, 97), torch.randn(1, 16, 49, 49)  # 769 crops
    with pytest.raises(ValueError) as error:
        head.loss([low, high], _seg_samples(1, 769, 769), dict())
    assert str(error.value) == (
        "LRASPPHead: pool_kernel='crop' gives a 32x32 window (crop_size=(512, 512) "
        "at output_stride=16: ceil(crop / output_stride), as TF DeepLab), but this "
        "training batch's high-level feature map is 49x49 (input 769x769): the "
        "window must be the training crop's whole map. Set decode_head.crop_size to "
        "the crop the training pipeline makes (RandomCrop's crop_size, "
        "data_preprocessor.size) and decode_head.output_stride to the backbone's "
        "output_stride")
    with pytest.raises(ValueError) as error:
        LRASPPHead(pool_kernel='crop', crop_size=(512, 1024), **base)
    assert str(error.value) == (
        "pool_kernel='crop' derives the kernel from the training crop as TF DeepLab "
        "does, ceil(crop / output_stride) per side: give crop_size=(H, W), the "
        "pipeline's crop, and output_stride, the backbone's (got crop_size=(512, "
        "1024), output_stride=None)")
    with pytest.raises(ValueError, match="read only with pool_kernel='crop'"):
        LRASPPHead(crop_size=(512, 1024), **base)
    with pytest.raises(ValueError, match="drop pool_kernel='crop'"):
        LRASPPHead(pool_kernel='crop', crop_size=512, output_stride=16,
                   global_pool=True, **base)
    with pytest.raises(ValueError, match=r"pool_kernel='crop' with crop_size"):
        LRASPPHead(**base)([low, torch.randn(1, 16, 32, 64)])
