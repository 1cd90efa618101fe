"""SSDLite on mmdet: anchors, the predict fix, channels read from the backbone."""
from pathlib import Path

import pytest
import torch
from mmdet.models.dense_heads import SSDHead
from mmdet.structures import DetDataSample
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mobilenet_tasks.models.dense_heads import SSDLiteHead
from mobilenet_tasks.models.task_modules import SSDLiteAnchorGenerator
from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.testing import FLOAT32_EPS, max_abs_diff
from mobilenet_tasks.utils.config import build_model
from mobilenet_tasks.utils.model_index import load_model_index
from mobilenet_tasks.utils.paper import PAPER_TABLES

ROOT = Path(__file__).resolve().parents[2]
SIZES = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
# Anchors are float32 constants: a few correctly rounded float32 operations (the same
# on every CPU) per coordinate of < 512 px, in another order in each library; 4 ulps
# of 512 px bound the difference.
ANCHOR_TOL = 4 * FLOAT32_EPS * 512


def test_anchors_match_torchvision_default_boxes():
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    ours = torch.cat(SSDLiteAnchorGenerator(320).grid_priors(SIZES, device='cpu'))
    reference = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    boxes = reference._grid_default_boxes(SIZES, [320, 320]) * 320  # cx, cy, w, h
    xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2],
                     1)
    assert ours.shape == (3234, 4)
    assert max_abs_diff(ours, xyxy) <= ANCHOR_TOL


def test_reduced_lowest_level_is_tf_layout():
    gen = SSDLiteAnchorGenerator(320, reduce_lowest_level=True)
    assert gen.num_base_priors == [3, 6, 6, 6, 6, 6]
    first = gen.single_level_grid_priors((20, 20), 0, device='cpu')[:3]
    wh = first[:, 2:] - first[:, :2]
    # scale 0.1 at ratio 1; scale 0.2 at ratios 2 and 1/2 (TF's lowest layer)
    expected = torch.tensor([[32., 32.], [64 * 2**.5, 64 / 2**.5], [64 / 2**.5, 64 * 2**.5]])
    torch.testing.assert_close(wh, expected, atol=ANCHOR_TOL, rtol=0)
    centre = (first[0, :2] + first[0, 2:]) / 2
    assert torch.equal(centre, torch.tensor([8., 8.]))  # cell centre, stride 16: exact


def test_anchor_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match='min_ratio < max_ratio'):
        SSDLiteAnchorGenerator(min_ratio=0.9, max_ratio=0.2)
    with pytest.raises(ValueError, match='6 levels'):
        SSDLiteAnchorGenerator().grid_priors(SIZES[:5], device='cpu')


def _head(cls):
    init_default_scope('mmdet')
    return cls(num_classes=3, in_channels=(16, ) * 6, use_depthwise=True,
               anchor_generator=dict(type='mobilenet_tasks.SSDLiteAnchorGenerator',
                                     input_size=64),
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                               target_stds=[0.1, 0.1, 0.2, 0.2]),
               test_cfg=ConfigDict(nms_pre=100, nms=dict(type='nms', iou_threshold=0.5),
                                   min_bbox_size=0, score_thr=0.01, max_per_img=10))


def test_stock_ssd_head_cannot_predict_ours_can():
    """mmdet 3.3.0 issues #11063/#11305/#11780: SSDHead has no loss_cls."""
    feats = [torch.rand(1, 16, s, s) for s in (4, 2, 1, 1, 1, 1)]
    metas = [dict(img_shape=(64, 64), scale_factor=(1., 1.))]
    stock = _head(SSDHead)
    with pytest.raises(AttributeError, match='loss_cls'):
        stock.predict_by_feat(*stock(feats), batch_img_metas=metas, rescale=False)
    ours = _head(SSDLiteHead)
    result = ours.predict_by_feat(*ours(feats), batch_img_metas=metas, rescale=False)[0]
    assert result.bboxes.shape[1] == 4 and 0 < len(result) <= 10
    assert set(result.labels.tolist()) <= {0, 1, 2}
    # the stand-in is not a module: state dicts stay mmdet's
    assert ours.state_dict().keys() == stock.state_dict().keys()


def test_ssdlite_reads_channels_from_backbone():
    init_default_scope('mmdet')
    model = build_model(str(ROOT / 'configs/ssdlite_v3_small_reduced_coco.py'))
    assert model.backbone.out_channels == (288, 288)
    assert model.bbox_head.in_channels == (288, 288, 512, 256, 256, 128)
    assert model.bbox_head.num_base_priors == [3, 6, 6, 6, 6, 6]


def test_ssdlite_rejects_channels_that_disagree():
    init_default_scope('mmdet')
    cfg = dict(type='mobilenet_tasks.SSDLite',
               backbone=dict(type='mobilenet_tasks.MobileNetV3', arch='small',
                             expansion_indices=(9, ), out_indices=(12, )),
               neck=dict(type='SSDNeck', in_channels=(672, 960),
                         out_channels=(672, 960, 512, 256, 256, 128),
                         level_strides=(2, 2, 2, 2), level_paddings=(1, 1, 1, 1),
                         l2_norm_scale=None, use_depthwise=True),
               bbox_head=dict(type='mobilenet_tasks.SSDLiteHead', num_classes=2))
    with pytest.raises(ValueError, match=r'backbone emits \(288, 576\)'):
        MODELS.build(cfg)


def _batch(size=320, n=2):
    box = size / 320
    samples = []
    for _ in range(n):
        ds = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         pad_shape=(size, size), scale_factor=(1., 1.)))
        ds.gt_instances = InstanceData(  # labels valid for the 4-class demo too
            bboxes=torch.tensor([[30., 40., 150., 200.], [180., 100., 300., 280.]]) * box,
            labels=torch.tensor([3, 1]))
        samples.append(ds)
    inputs = [torch.randint(0, 255, (3, size, size), dtype=torch.uint8) for _ in range(n)]
    return dict(inputs=inputs, data_samples=samples)


DETECTION_CONFIGS = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / 'configs').glob('ssdlite_*.py'))


# Table 6's rows (mobilenet_tasks.utils.paper, ../shared/PAPER_TABLES.md) and the
# backbone of each: class, arch, width, reduced tail (†), and the two taps SSDLite reads
# as (module, channels): C4 at stride 16 (the expansion of block 13 of V3-Large and
# MnasNet, 9 of V3-Small, 14 of V2 = TF's "layer_15"; V1's block 11, it has no
# expansion) and C5 at stride 32 (the last layer; V2's and MnasNet's scaled by the
# width, as TF's extractors do).
TABLE_6_BACKBONES = {
    'V3': ('MobileNetV3', 'large', 1.0, False,
           ('layers.13.expand_conv', 672), ('layers.16', 960)),
    'V3†': ('MobileNetV3', 'large', 1.0, True,
            ('layers.13.expand_conv', 672), ('layers.16', 480)),
    'V3-Small': ('MobileNetV3', 'small', 1.0, False,
                 ('layers.9.expand_conv', 288), ('layers.12', 576)),
    'V3-Small†': ('MobileNetV3', 'small', 1.0, True,
                  ('layers.9.expand_conv', 288), ('layers.12', 288)),
    'V2': ('MobileNetV2', None, 1.0, False,
           ('layers.14.expand_conv', 576), ('layers.18', 1280)),
    'V2 0.5': ('MobileNetV2', None, 0.5, False,
               ('layers.14.expand_conv', 288), ('layers.18', 640)),
    'V2 0.35': ('MobileNetV2', None, 0.35, False,
                ('layers.14.expand_conv', 192), ('layers.18', 448)),
    'MnasNet': ('MnasNet', None, 1.0, False,
                ('layers.13.expand_conv', 672), ('layers.17', 1280)),
    'MnasNet 0.5': ('MnasNet', None, 0.5, False,
                    ('layers.13.expand_conv', 336), ('layers.17', 640)),
    'MnasNet 0.35': ('MnasNet', None, 0.35, False,
                     ('layers.13.expand_conv', 240), ('layers.17', 448)),
    'V1': ('MobileNetV1', None, 1.0, False, ('layers.11', 512), ('layers.13', 1024)),
}


def test_every_table_6_row_is_covered():
    """Each row of the paper's Table 6 is one model-index entry whose config exists,
    is among the configs built and run above, and builds that row's backbone with
    its C4 and C5 taps, at 320x320."""
    rows = sorted(PAPER_TABLES['6'][1])
    assert sorted(TABLE_6_BACKBONES) == rows  # this test knows every row
    configs = {}
    for entry in load_model_index():
        paper = entry.get('Paper') or {}
        if str(paper.get('Table')) == '6':
            configs.setdefault(str(paper['Row']), []).append(entry['Config'])
    assert sorted(configs) == rows, 'rows without a model-index entry: ' \
        f'{sorted(set(rows) - set(configs))}, unknown: {sorted(set(configs) - set(rows))}'
    wrong = {}
    for row in rows:
        assert len(configs[row]) == 1, (row, configs[row])
        config = Path(configs[row][0])
        assert config.is_file(), f'Table 6 row {row!r}: {config} does not exist'
        assert str(config.relative_to(ROOT)) in DETECTION_CONFIGS
        model = build_model(str(config), init_weights=False)
        backbone = model.backbone
        built = (type(backbone).__name__, getattr(backbone, 'arch', None),
                 backbone.widen_factor, getattr(backbone, 'reduced_tail', False),
                 tuple((f['module'], f['num_chs'], f['reduction'])
                       for f in backbone.feature_info),
                 model.bbox_head.prior_generator.input_size)
        kind, arch, width, reduced, c4, c5 = TABLE_6_BACKBONES[row]
        if built != (kind, arch, width, reduced, ((*c4, 16), (*c5, 32)), (320, 320)):
            wrong[row] = (config.name, built)
    assert not wrong, wrong


@pytest.mark.parametrize('config', DETECTION_CONFIGS)
def test_loss_and_predict_step(config):
    from mmengine.optim import OptimWrapper
    model = build_model(str(ROOT / config))
    size = model.bbox_head.prior_generator.input_size[0]
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    model.train()
    before = model.bbox_head.cls_convs[0][1].weight.clone()
    losses = model.train_step(_batch(size), optim)
    assert set(losses) == {'loss', 'loss_cls', 'loss_bbox'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert not torch.equal(before, model.bbox_head.cls_convs[0][1].weight)
    model.eval()
    model.bbox_head.test_cfg.score_thr = 0.0  # an untrained head scores low
    results = model.test_step(_batch(size))
    assert len(results) == 2
    pred = results[0].pred_instances
    assert pred.bboxes.shape == (len(pred), 4) and 0 < len(pred)
    assert len(pred) <= model.bbox_head.test_cfg.max_per_img
    assert (pred.bboxes >= 0).all() and (pred.bboxes <= size).all()
    assert (pred.labels < model.bbox_head.num_classes).all()
