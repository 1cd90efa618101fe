# Semantic segmentation on Cityscapes (fine annotations, 19 classes), trained from
# scratch, for 4 GPUs x 4 images (8 GPUs x 2 gives the same batch of 16).
# Recipe: the paper's section 6.3 trains from scratch on the fine annotations with the
# DeepLabv3 protocol (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic
# Image Segmentation", section 4; TF DeepLab g3doc/cityscapes.md, the MobileNetV2
# paper's section 6.3): output stride 16, 769x769 crops of images randomly scaled by
# 0.5-2.0 and flipped, "poly" learning rate (power 0.9) from 0.01, SGD momentum 0.9,
# weight decay 4e-5 and BN decay 0.997 / eps 0.001 (TF DeepLab's MobileNet arg scope),
# inputs scaled to [-1, 1], single-scale whole-image inference at 1024x2048.
# Batch 16 and 320k iterations are mmseg's schedule for its from-scratch MobileNetV3
# LR-ASPP (DeepLab's 90k iterations assume an ImageNet-initialised backbone).
# The model (backbone + decode head) comes from each config; channels are read from the
# backbone by mobilenet_tasks.EncoderDecoder.
_base_ = [
    'mmseg::_base_/datasets/cityscapes.py', 'mmseg::_base_/default_runtime.py'
]

# ---- frequently modified parameters ----
crop_size = (769, 769)  # DeepLab's Cityscapes crop; at output stride 16 a 49x49 map
num_classes = 19  # Cityscapes train ids
norm_cfg = dict(type='SyncBN', eps=0.001, momentum=0.003)  # TF decay 0.997
batch_size = 4  # per GPU, 4 GPUs
max_iters = 320000
base_lr = 0.01  # for 16 images a step (auto_scale_lr rescales it)
data_root = 'data/cityscapes/'

model = dict(
    type='mobilenet_tasks.EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[127.5, 127.5, 127.5],  # TF DeepLab MobileNet: x / 127.5 - 1
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    pretrained=None,
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 1024),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=0,
        end=max_iters,
        by_epoch=False)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=4e-5))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=max_iters // 10,
        max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=False)
# base_batch_size = 4 GPUs x 4 images; `tools/train.py --auto-scale-lr` rescales the lr
auto_scale_lr = dict(enable=False, base_batch_size=16)
