"""Segmentation on mmseg: channels read from the backbone, and every shipped
segmentation config trains a step and predicts on CPU."""
from pathlib import Path

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.utils.config import build_model, load_config

ROOT = Path(__file__).resolve().parents[2]
SEGMENTATION_CONFIGS = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / 'configs').glob('*.py')
    if p.name.startswith(('lraspp_', 'raspp_')))


def _segmentor(backbone, decode_head, **kwargs):
    init_default_scope('mmseg')
    return MODELS.build(dict(
        type='mobilenet_tasks.EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', size=(64, 64)),
        backbone=backbone, decode_head=decode_head, **kwargs))


V3_SMALL = dict(type='mobilenet_tasks.MobileNetV3', arch='small', output_stride=16,
                out_indices=(3, 12))


def test_encoder_decoder_reads_channels_from_backbone():
    lraspp = _segmentor(V3_SMALL, dict(type='mobilenet_tasks.LRASPPHead', channels=32,
                                       num_classes=5, global_pool=True))
    assert tuple(lraspp.decode_head.in_channels) == (24, 576)
    # R-ASPP's default in_index (-1, from BaseDecodeHead) selects the last output.
    raspp = _segmentor(V3_SMALL, dict(type='mobilenet_tasks.RASPPHead', channels=32,
                                      num_classes=5),
                       auxiliary_head=[dict(type='FCNHead', in_index=0, channels=8,
                                            num_convs=1, num_classes=5)])
    assert raspp.decode_head.in_channels == 576
    assert raspp.auxiliary_head[0].in_channels == 24
    with torch.no_grad():
        out = raspp.eval()(torch.rand(1, 3, 64, 96), mode='tensor')
    assert out.shape == (1, 5, 4, 6)  # output stride 16


@pytest.mark.parametrize('head, message', [
    (dict(in_channels=(40, 576)), r'backbone emits \(24, 576\)'),
    (dict(in_index=(0, 5)), r'in_index=\(0, 5\) does not select.*2 feature maps'),
])
def test_encoder_decoder_rejects_channels_that_disagree(head, message):
    head = dict(type='mobilenet_tasks.LRASPPHead', channels=32, num_classes=5, **head)
    with pytest.raises(ValueError, match=message):
        _segmentor(V3_SMALL, head)


def test_encoder_decoder_with_a_neck_needs_explicit_channels():
    neck = dict(type='mmseg.Feature2Pyramid', embed_dim=24, rescales=[1])
    with pytest.raises(ValueError, match='in_channels is needed with a neck'):
        _segmentor(dict(V3_SMALL, out_indices=(3, )), dict(
            type='mobilenet_tasks.RASPPHead', channels=8, num_classes=5), neck=neck)


def test_every_table_7_and_8_row_is_covered():
    from mobilenet_tasks.utils.model_index import load_model_index
    rows = {(str(e['Paper']['Table']), str(e['Paper']['Row']))
            for e in load_model_index(ROOT) if e.get('Paper')}
    assert {('7', str(i)) for i in range(1, 12)} <= rows
    assert {('8', 'V3 OS32'), ('8', 'V3-Small OS32')} <= rows
    assert len(SEGMENTATION_CONFIGS) >= 15


def _batch(size, num_classes, n=1):
    gen = torch.Generator().manual_seed(0)
    samples, inputs = [], []
    for _ in range(n):
        sample = SegDataSample(metainfo=dict(img_shape=size, ori_shape=size,
                                             pad_shape=size))
        label = torch.randint(0, num_classes, (1, *size), generator=gen)
        label[:, :8] = 255  # an ignored strip, as Cityscapes' void pixels
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
        inputs.append(torch.randint(0, 256, (3, *size), dtype=torch.uint8,
                                    generator=gen))
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('config', SEGMENTATION_CONFIGS)
def test_loss_and_predict_step(config):
    """One training step at the config's crop size (the LR-ASPP gate's 49x49 pooling
    needs the 769x769 crop at output stride 16), then a prediction on that image."""
    from mmengine.optim import OptimWrapper
    cfg = load_config(str(ROOT / config))
    model = build_model(cfg)
    size = tuple(model.data_preprocessor.size or cfg.crop_size)
    num_classes = model.decode_head.num_classes
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    head_before = model.decode_head.conv_seg.weight.clone()
    stem_before = model.backbone.layers[0].conv.weight.clone()
    # Batch 2: R-ASPP's image-pooling BN cannot train on one 1x1 map.
    losses = model.train_step(_batch(size, num_classes, n=2), optim)
    assert set(losses) == {'loss', 'decode.loss_ce', 'decode.acc_seg'}
    assert torch.isfinite(losses['loss']) and losses['loss'] > 0
    # The step reached the head and, through the whole backbone, the stem.
    assert not torch.equal(head_before, model.decode_head.conv_seg.weight)
    assert not torch.equal(stem_before, model.backbone.layers[0].conv.weight)
    model.eval()
    results = model.test_step(_batch(size, num_classes))
    pred = results[0].pred_sem_seg.data
    assert pred.shape == (1, *size)
    assert 0 <= pred.min() and pred.max() < num_classes
    assert results[0].seg_logits.data.shape == (num_classes, *size)
