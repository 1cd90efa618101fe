# SSDLite at 320x320 on COCO 2017, from scratch, for 8 GPUs x 24 images.
# Recipe: torchvision's ssdlite320_mobilenet_v3_large (21.3 box AP on COCO val2017):
# SGD momentum 0.9, lr 0.15 for 192 images a step, cosine, weight decay 4e-5, 660
# epochs, BN eps 0.001 momentum 0.03, head init normal std 0.03, inputs scaled to
# [-1, 1], random IoU crop + flip, score threshold 0.001, NMS 0.55, 300 detections.
# Architecture: the paper's section 6.2 / Table 6 (C4, C5 + extra layers 512, 256,
# 256, 128, each 1x1 to half depth then a stride-2 depthwise-separable 3x3).
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py', 'mmdet::_base_/default_runtime.py'
]

# ---- frequently modified parameters ----
input_size = 320  # every image is resized to input_size x input_size
num_classes = 80  # COCO 2017 (the paper counts 90 COCO ids + background)
extra_channels = (512, 256, 256, 128)  # extra SSDLite layers after C5
norm_cfg = dict(type='BN', eps=0.001, momentum=0.03)  # TF: eps 0.001, decay 0.97
batch_size = 24  # per GPU, 8 GPUs
max_epochs = 660  # torchvision's schedule
base_lr = 0.15  # for 8 x 24 = 192 images a step (auto_scale_lr rescales it)
data_root = 'data/coco/'

model = dict(
    type='mobilenet_tasks.SSDLite',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[127.5, 127.5, 127.5],  # torchvision: (x / 255 - 0.5) / 0.5
        std=[127.5, 127.5, 127.5],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='mobilenet_tasks.MobileNetV3',
        arch='large',
        expansion_indices=(13, ),  # C4 = expansion of block 13, output stride 16
        out_indices=(16, ),  # C5 = the final 1x1 conv, output stride 32
        norm_cfg=norm_cfg),
    neck=dict(
        type='SSDNeck',  # mmdet's; channels are read from the backbone (SSDLite)
        extra_channels=extra_channels,
        level_strides=(2, 2, 2, 2),
        level_paddings=(1, 1, 1, 1),
        l2_norm_scale=None,
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.03)),
    bbox_head=dict(
        type='mobilenet_tasks.SSDLiteHead',  # mmdet's SSDHead that can predict
        num_classes=num_classes,
        use_depthwise=True,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.03),
        anchor_generator=dict(
            type='mobilenet_tasks.SSDLiteAnchorGenerator',
            input_size=input_size,
            num_levels=6,
            min_ratio=0.2,
            max_ratio=0.95,
            aspect_ratios=(2, 3),
            reduce_lowest_level=True),  # TF: reduce_boxes_in_lowest_layer
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2])),  # TF/torchvision box coder (10, 10, 5, 5)
    train_cfg=dict(
        assigner=dict(
            type='MaxIoUAssigner',
            pos_iou_thr=0.5,
            neg_iou_thr=0.5,
            min_pos_iou=0.,
            ignore_iof_thr=-1,
            gt_max_assign_all=False),
        sampler=dict(type='PseudoSampler'),
        smoothl1_beta=1.,
        allowed_border=-1,
        pos_weight=-1,
        neg_pos_ratio=3,  # hard negative mining, as torchvision
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        nms=dict(type='nms', iou_threshold=0.55),
        min_bbox_size=0,
        score_thr=0.001,
        max_per_img=300))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(  # torchvision's RandomIoUCrop
        type='MinIoURandomCrop',
        min_ious=(0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size=0.3),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=4,
    dataset=dict(
        data_root=data_root,
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=20)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(
        type='CosineAnnealingLR',
        begin=0,
        T_max=max_epochs,
        end=max_epochs,
        by_epoch=True,
        eta_min=0)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=base_lr, momentum=0.9, weight_decay=4e-5))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW')
]
# base_batch_size = 8 GPUs x 24 images; `tools/train.py --auto-scale-lr` rescales the lr
auto_scale_lr = dict(enable=False, base_batch_size=192)
