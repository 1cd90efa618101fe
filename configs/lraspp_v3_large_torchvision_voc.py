# torchvision's lraspp_mobilenet_v3_large as an mmseg EncoderDecoder: the paper's Lite
# R-ASPP on MobileNetV3-Large at output stride 16, predicting the 21 Pascal VOC classes
# (background + the 20 VOC categories, torchvision's label order = mmseg's
# PascalVOCDataset order). Weights: torchvision's
# LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1 (trained on the COCO train
# images of the 20 VOC categories; 57.9 mIoU, 91.2 pixel accuracy on COCO val2017 with
# VOC labels, as torchvision reports it; 3,221,538 params, as this model). Convert with
#   python tools/model_converters/torchvision_lraspp.py \
#       lraspp_mobilenet_v3_large-d234d4ea.pth lraspp_v3_large_torchvision_voc.pth
# and test it (tools/test.py CONFIG lraspp_v3_large_torchvision_voc.pth) or fine-tune
# from it (load_from=<that file>). It loads strictly and gives torchvision's logits
# (tests/test_tools/test_torchvision_lraspp.py: max abs difference 0 on the same
# normalized input, 3e-4 through each side's preprocessing, which rounds differently).
#
# As torchvision: mobilenet_v3_large(dilated=True), i.e. the last stage's stride 2
# becomes dilation 2 (our output_stride=16); low = layer 4 (the first 40-channel block,
# stride 8), high = layer 16 (the final 1x1 conv, 960 channels); the head with global
# pooling and no dropout, 128 channels; backbone BN eps 0.001 momentum 0.01, head BN
# PyTorch's default (eps 1e-5); logits upsampled bilinearly (align_corners=False) to the
# input; ImageNet mean/std on RGB in [0, 255].
#
# What differs (not the model):
# - Resize: torchvision's eval transform resizes the short side to 520 with an
#   antialiased bilinear resize of the tensor (long side truncated), ResizeShortestEdge
#   with cv2 bilinear (no antialias; long side rounded). Same input when no resize is
#   needed (a short side of 520), close otherwise.
# - Scoring: torchvision's reference scores at the resized size (targets resized with
#   nearest), mmseg at the original size (logits resized back). The 57.9 mIoU is on
#   COCO val2017, not on VOC 2012 val (this config's dataset): not a target here.
# - Fine-tuning below is mmseg's 20k VOC schedule with torchvision's optimizer (SGD lr
#   0.01 momentum 0.9 weight decay 1e-6, poly 0.9, 8 GPUs x 4 images), not
#   torchvision's COCO training (30 epochs).
_base_ = [
    'mmseg::_base_/datasets/pascal_voc12.py', 'mmseg::_base_/default_runtime.py'
]

# ---- frequently modified parameters ----
num_classes = 21  # background + 20 VOC categories (torchvision's num_classes)
short_side = 520  # torchvision's eval transform: Resize(520), the short side
crop_size = (512, 512)  # fine-tuning crops (mmseg's VOC pipeline)
batch_size = 4  # per GPU, 8 GPUs (torchvision's recipe: 8 x 4)
max_iters = 20000  # a short fine-tuning schedule
base_lr = 0.01  # torchvision's, for 32 images a step (auto_scale_lr rescales it)
data_root = 'data/VOCdevkit/VOC2012'

model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],  # ImageNet, x 255: torchvision's transform
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    pretrained=None,
    backbone=dict(
        type='mobilenet_tasks.MobileNetV3',
        arch='large',
        output_stride=16,  # torchvision's dilated=True
        out_indices=(4, 16),  # low (stride 8, 40 ch), high (final conv, 960 ch)
        norm_cfg=dict(type='BN', eps=0.001, momentum=0.01)),
    decode_head=dict(
        type='mobilenet_tasks.LRASPPHead',
        in_channels=(40, 960),
        in_index=(0, 1),
        channels=128,
        global_pool=True,  # torchvision's AdaptiveAvgPool2d(1)
        dropout_ratio=0,  # torchvision has none
        num_classes=num_classes,
        norm_cfg=dict(type='BN', requires_grad=True),  # torchvision's BatchNorm2d
        align_corners=False,
        # torchvision's F.cross_entropy(ignore_index=255): mean over labelled pixels
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
            avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='RandomResize',
        scale=(2048, 512),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    # max_size only because ResizeShortestEdge requires one: torchvision caps nothing
    dict(type='ResizeShortestEdge', scale=short_side, max_size=100 * short_side),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='PolyLR', eta_min=0, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=1e-6))
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
# base_batch_size = 8 GPUs x 4 images; `tools/train.py --auto-scale-lr` rescales the lr
auto_scale_lr = dict(enable=False, base_batch_size=32)
