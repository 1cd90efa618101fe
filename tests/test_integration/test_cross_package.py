"""A stock mmdet, mmseg or mmpretrain config with only its backbone swapped for ours must
build and train.

The detection and segmentation configs are written to ``tmp_path`` as a user would write
them: ``_base_`` is the stock config (``mmdet::`` / ``mmseg::``), the backbone is replaced
with ``type='mobilenet_tasks.MobileNetV3'`` and the neck / head input channels are taken
from our backbone's ``out_channels``. Two test-only settings are changed where they are
used, not in the configs: the segmentation preprocessor's crop size (the synthetic batch
is 128x128, not 512x1024) and the detector's test score threshold (so a fresh model
predicts some boxes).
"""
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.structures import InstanceData, PixelData

from mobilenet_tasks.models.backbones import MobileNetV3

ROOT = Path(__file__).resolve().parents[2]

RETINANET = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
DEEPLABV3PLUS = ('mmseg::deeplabv3plus/'
                 'deeplabv3plus_r50-d8_4xb2-40k_cityscapes-512x1024.py')

# RetinaNet's FPN has start_level=1 and anchors at strides 8..128: it wants four inputs
# at strides 4, 8, 16, 32 (ResNet's C2..C5). MobileNetV3-Large layers 3, 6, 12 and 16
# (the final conv) are the last layers at those strides.
DET_OUT_INDICES = (3, 6, 12, 16)
# DeepLabV3+: the stride-4 low-level feature (layer 3) for the decoder, and the final
# conv at output stride 8 for ASPP.
SEG_OUT_INDICES = (3, 16)
SEG_OUTPUT_STRIDE = 8
IMAGE_SIZE = 128


def det_backbone():
    return MobileNetV3(arch='large', out_indices=DET_OUT_INDICES)


def seg_backbone():
    return MobileNetV3(arch='large', output_stride=SEG_OUTPUT_STRIDE,
                       out_indices=SEG_OUT_INDICES)


def det_config_text(custom_imports=False):
    backbone = det_backbone()
    assert backbone.strides == (4, 8, 16, 32)
    text = f"""
        _base_ = {RETINANET!r}
        model = dict(
            backbone=dict(
                _delete_=True,
                type='mobilenet_tasks.MobileNetV3',
                arch='large',
                out_indices={DET_OUT_INDICES!r}),
            neck=dict(in_channels={list(backbone.out_channels)!r}))
        """
    if custom_imports:
        text += ("custom_imports = dict(imports=['mobilenet_tasks'], "
                 "allow_failed_imports=False)\n")
    return textwrap.dedent(text)


def seg_config_text(custom_imports=False):
    backbone = seg_backbone()
    assert backbone.strides == (4, 8)
    low_level, last = backbone.out_channels
    # No SyncBN on the CPU; the backbone's own default norm is BN already.
    # ``pretrained`` of the stock config is ResNet's checkpoint: EncoderDecoder would pass
    # it to our backbone. The auxiliary FCN head read ResNet's C4; it is dropped.
    text = f"""
        _base_ = {DEEPLABV3PLUS!r}
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            pretrained=None,
            backbone=dict(
                _delete_=True,
                type='mobilenet_tasks.MobileNetV3',
                arch='large',
                output_stride={SEG_OUTPUT_STRIDE},
                out_indices={SEG_OUT_INDICES!r}),
            decode_head=dict(
                in_channels={last}, in_index=1, c1_in_channels={low_level},
                norm_cfg=norm_cfg),
            auxiliary_head=None)
        """
    if custom_imports:
        text += ("custom_imports = dict(imports=['mobilenet_tasks'], "
                 "allow_failed_imports=False)\n")
    return textwrap.dedent(text)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- synthetic batches, packed as the mmdet / mmseg pipelines pack them ----------------
def images(num=2, size=IMAGE_SIZE, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=gen)
            for _ in range(num)]


def det_batch():
    from mmdet.structures import DetDataSample

    boxes = [[[10., 20., 70., 90.], [40., 30., 120., 110.]],
             [[5., 5., 60., 50.], [64., 64., 127., 127.], [30., 70., 90., 120.]]]
    labels = [[1, 5], [0, 3, 3]]
    samples = []
    for box, label in zip(boxes, labels):
        shape = (IMAGE_SIZE, IMAGE_SIZE)
        sample = DetDataSample(metainfo=dict(
            img_id=len(samples), img_shape=shape, ori_shape=shape, pad_shape=shape,
            scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor(box), labels=torch.tensor(label))
        samples.append(sample)
    return dict(inputs=images(), data_samples=samples)


def seg_batch():
    from mmseg.structures import SegDataSample

    samples = []
    for i in range(2):
        label = torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.long)
        label[:, :, IMAGE_SIZE // 2:] = 7 + i
        label[:, 20:60, 20:60] = 11
        label[:, :4] = 255  # ignored
        shape = (IMAGE_SIZE, IMAGE_SIZE)
        sample = SegDataSample(metainfo=dict(img_shape=shape, ori_shape=shape))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=images(), data_samples=samples)


class GradRecorder:
    """Record which parameters got a non-zero gradient in the backward passes run inside
    the block (weight decay alone moves every parameter, so a changed parameter does
    not prove that the loss reached it)."""

    def __init__(self, model):
        self.model = model
        self.nonzero = set()

    def __enter__(self):
        def hook(name):
            def record(grad):
                if grad.abs().sum() > 0:
                    self.nonzero.add(name)
            return record

        self.handles = [p.register_hook(hook(n)) for n, p in
                        self.model.named_parameters() if p.requires_grad]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def train(model, optim_wrapper, data, iterations=3):
    """Run ``iterations`` train steps; return the losses of each step, the parameters
    before training and the names of the parameters that got a gradient."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    history = []
    with GradRecorder(model) as grads:
        for _ in range(iterations):
            log_vars = model.train_step(data, optim_wrapper)
            history.append(
                {k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()})
    return history, before, grads.nonzero


def assert_trained(model, history, before, got_grad, loss_keys):
    assert len(history) == 3
    for log_vars in history:
        assert set(loss_keys) <= set(log_vars), log_vars
        for key in loss_keys:
            assert math.isfinite(log_vars[key]), (key, history)
        assert log_vars['loss'] > 0
    # The loss reached every part: our stem and final conv, the neck/heads ...
    backbone = {n for n in before if n.startswith('backbone.')}
    assert {'backbone.layers.0.conv.weight', 'backbone.layers.16.conv.weight'} <= got_grad
    assert len(got_grad & backbone) > 0.9 * len(backbone)
    assert got_grad - backbone, 'no neck or head parameter got a gradient'
    # ... and the optimizer moved them.
    changed = {n for n, p in model.named_parameters()
               if not torch.equal(p.detach(), before[n])}
    assert got_grad <= changed


# -- mmdet: RetinaNet-FPN --------------------------------------------------------------
def test_retinanet_with_our_backbone_trains_and_predicts(tmp_path):
    from mmdet.registry import MODELS as DET_MODELS

    cfg = Config.fromfile(write(tmp_path, 'retinanet_mnv3.py', det_config_text()))
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.neck.in_channels == [24, 40, 112, 960]
    init_default_scope(cfg.default_scope)
    model = DET_MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.backbone) is MobileNetV3
    assert type(model).__name__ == 'RetinaNet'
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    history, before, got_grad = train(model, optim_wrapper, det_batch())
    assert_trained(model, history, before, got_grad, ['loss', 'loss_cls', 'loss_bbox'])
    assert all(h['loss_bbox'] > 0 for h in history)  # the gt boxes got anchors

    # A fresh RetinaHead scores every anchor ~0.01 (prior_prob), below the stock
    # score_thr of 0.05: keep every box so the output is not trivially empty.
    model.bbox_head.test_cfg.score_thr = 0.0
    model.eval()
    with torch.no_grad():
        results = model.test_step(det_batch())
    assert len(results) == 2
    for result in results:
        pred = result.pred_instances
        num = len(pred)
        assert 0 < num <= cfg.model.test_cfg.max_per_img
        assert pred.bboxes.shape == (num, 4)
        assert pred.scores.shape == (num, ) and pred.labels.shape == (num, )
        assert torch.isfinite(pred.bboxes).all()
        assert ((pred.labels >= 0) & (pred.labels < 80)).all()
        assert (pred.bboxes[:, 2:] >= pred.bboxes[:, :2]).all()
        assert pred.bboxes.min() >= 0 and pred.bboxes.max() <= IMAGE_SIZE


# -- mmseg: DeepLabV3+ -----------------------------------------------------------------
def test_deeplabv3plus_with_our_backbone_trains_and_predicts(tmp_path):
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = Config.fromfile(write(tmp_path, 'deeplabv3plus_mnv3.py', seg_config_text()))
    assert cfg.default_scope == 'mmseg'
    assert cfg.model.auxiliary_head is None
    # Test-only: the stock crop pads every training image to 512x1024; our synthetic
    # batch is 128x128.
    cfg.model.data_preprocessor.size = (IMAGE_SIZE, IMAGE_SIZE)
    init_default_scope(cfg.default_scope)
    model = SEG_MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.backbone) is MobileNetV3
    assert type(model.decode_head).__name__ == 'DepthwiseSeparableASPPHead'
    assert not model.with_auxiliary_head
    norms = [type(m) for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and torch.nn.SyncBatchNorm not in norms
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    history, before, got_grad = train(model, optim_wrapper, seg_batch())
    assert_trained(model, history, before, got_grad, ['loss', 'decode.loss_ce'])
    assert all(0 <= h['decode.acc_seg'] <= 100 for h in history)

    model.eval()
    with torch.no_grad():
        results = model.test_step(seg_batch())
    assert len(results) == 2
    for result in results:
        assert result.pred_sem_seg.data.shape == (1, IMAGE_SIZE, IMAGE_SIZE)
        assert result.seg_logits.data.shape == (19, IMAGE_SIZE, IMAGE_SIZE)
        pred = result.pred_sem_seg.data
        assert pred.min() >= 0 and pred.max() < 19


# -- the registry resolves our type lazily, from a fresh interpreter -------------------
SUBPROCESS_SCRIPT = r'''
import json, sys
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmdet.registry import MODELS as DET_MODELS
from mmseg.registry import MODELS as SEG_MODELS

report = dict(before_load='mobilenet_tasks' in sys.modules)
det_cfg = Config.fromfile(sys.argv[1])
seg_cfg = Config.fromfile(sys.argv[2])
report['after_load'] = 'mobilenet_tasks' in sys.modules

init_default_scope('mmdet')
det = DET_MODELS.build(det_cfg.model)
report['after_build'] = 'mobilenet_tasks' in sys.modules
init_default_scope('mmseg')
seg = SEG_MODELS.build(seg_cfg.model)
mmseg_bare = SEG_MODELS.build(dict(type='MobileNetV3'))

def name(obj):
    return f'{type(obj).__module__}.{type(obj).__name__}'

report.update(
    det_backbone=name(det.backbone), det_neck_in=list(det.neck.in_channels),
    det_out_channels=list(det.backbone.out_channels),
    seg_backbone=name(seg.backbone), seg_out_channels=list(seg.backbone.out_channels),
    seg_c1_in=seg.decode_head.c1_bottleneck.conv.in_channels,
    mmseg_bare=name(mmseg_bare))
print('REPORT ' + json.dumps(report))
'''

OURS = 'mobilenet_tasks.models.backbones.mobilenet_v3.MobileNetV3'


def test_fresh_interpreter_resolves_our_type_lazily_and_via_custom_imports(tmp_path):
    runs = {}
    for mode in ('lazy', 'custom_imports'):
        flag = mode == 'custom_imports'
        det = write(tmp_path, f'det_{mode}.py', det_config_text(custom_imports=flag))
        seg = write(tmp_path, f'seg_{mode}.py', seg_config_text(custom_imports=flag))
        # Both interpreters run at once; neither imports mobilenet_tasks itself.
        runs[mode] = subprocess.Popen(
            [sys.executable, '-c', SUBPROCESS_SCRIPT, det, seg], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reports = {}
    for mode, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f'{mode}:\n{err[-3000:]}'
        lines = [line for line in out.splitlines() if line.startswith('REPORT ')]
        assert len(lines) == 1, out[-3000:]
        reports[mode] = json.loads(lines[0][len('REPORT '):])

    expected = dict(
        det_backbone=OURS, det_neck_in=list(det_backbone().out_channels),
        det_out_channels=list(det_backbone().out_channels), seg_backbone=OURS,
        seg_out_channels=list(seg_backbone().out_channels), seg_c1_in=24,
        mmseg_bare='mmseg.models.backbones.mobilenet_v3.MobileNetV3')
    for mode, report in reports.items():
        assert report['before_load'] is False, mode
        assert {k: report[k] for k in expected} == expected, mode
        assert report['after_build'] is True, mode
    # Lazily: only building the model (the registry) imported mobilenet_tasks.
    assert reports['lazy']['after_load'] is False
    # custom_imports: loading the config did.
    assert reports['custom_imports']['after_load'] is True


def test_default_scope_picks_our_class_without_hijacking_bare_names():
    import mmpretrain.models.backbones as mmpretrain_backbones
    import mmseg.models.backbones as mmseg_backbones

    with DefaultScope.overwrite_default_scope('mobilenet_tasks'):
        ours = ROOT_MODELS.build(dict(type='MobileNetV3', arch='small'))
    assert type(ours) is MobileNetV3
    assert ours.out_channels == (576, )
    with DefaultScope.overwrite_default_scope('mmseg'):
        theirs = ROOT_MODELS.build(dict(type='MobileNetV3', arch='small'))
        # ... and the scoped name still reaches ours from mmseg.
        scoped = ROOT_MODELS.build(dict(type='mobilenet_tasks.MobileNetV3', arch='small'))
    assert type(theirs) is mmseg_backbones.MobileNetV3
    assert type(scoped) is MobileNetV3
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cls = ROOT_MODELS.build(dict(type='MobileNetV3', arch='small'))
    assert type(cls) is mmpretrain_backbones.MobileNetV3


# -- mmpretrain ------------------------------------------------------------------------
def test_mmpretrain_config_builds_and_trains():
    from mmpretrain.structures import DataSample

    from mobilenet_tasks.utils.config import build_model, load_config

    cfg = load_config(
        str(ROOT / 'configs/classification/mobilenet-v3-small_8xb128_in1k.py'))
    model = build_model(cfg)
    assert type(model.backbone) is MobileNetV3 and model.backbone.arch == 'small'
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(optim_wrapper.optimizer).__name__ == 'RMSprop'
    data = dict(inputs=images(size=64),
                data_samples=[DataSample().set_gt_label(3),
                              DataSample().set_gt_label(917)])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    with GradRecorder(model) as grads:
        log_vars = model.train_step(data, optim_wrapper)
    loss = float(log_vars['loss'].detach())
    assert math.isfinite(loss) and loss > 0
    assert {'backbone.layers.0.conv.weight', 'backbone.layers.12.conv.weight',
            'head.layers.1.fc.weight'} <= grads.nonzero
    changed = {n for n, p in model.named_parameters()
               if not torch.equal(p.detach(), before[n])}
    assert grads.nonzero <= changed
    model.eval()
    with torch.no_grad():
        results = model.test_step(data)
    assert [r.pred_score.shape for r in results] == [(1000, )] * 2
