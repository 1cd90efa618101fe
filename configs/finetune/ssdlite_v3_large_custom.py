# Fine-tune SSDLite + MobileNetV3-Large (the paper's Table 6 "V3") on your own
# COCO-format detection dataset. Copy this file (keep it in configs/finetune/, or point
# `_base_` at this checkout's configs/ssdlite_v3_large_coco.py), set the values of the
# first block, and train:
#     python tools/train.py configs/finetune/my_data.py
#     python tools/test.py configs/finetune/my_data.py work_dirs/my_data/iter_N.pth
# Everything else follows from those values: num_classes and the class names, the
# anchors (SSDLite's are relative to the input), the resize of the train, val and test
# pipelines, the loaders' files and the evaluator's annotation file. Set them here, not
# in a child config: a variable set in a child config does not reach the dicts this
# file has already built from it.
_base_ = '../ssdlite_v3_large_coco.py'

# ---- your data: set these ------------------------------------------------------------
data_root = 'data/my_dataset/'
train_ann_file = 'annotations/instances_train.json'  # relative to data_root
train_img_dir = 'train/'  # image folder, relative to data_root
val_ann_file = 'annotations/instances_val.json'
val_img_dir = 'val/'
classes = ('cat', 'dog')  # the names of the json's categories, in the json's order
input_size = 320  # square input; 320 is the paper's

# ---- where training starts: pretrained weights -----------------------------------------
# None: random weights. ImageNet weights for the backbone, downloaded, converted and
# cached on first use (docs: README, "Pretrained starts"):
# 'mobilenet_tasks://torchvision/mobilenet_v3_large' or
# 'mobilenet_tasks://timm/mobilenetv3_large_100'.
backbone_weights = None
# A whole detector to start from; its class layers start anew if the classes differ.
# torchvision's COCO SSDLite has torchvision's architecture (reduced tail, 6 anchors on
# every level): with it set _base_ = '../ssdlite_v3_large_reduced_torchvision_coco.py'
# and load_from = 'mobilenet_tasks://torchvision/ssdlite320_mobilenet_v3_large'.
load_from = None

# ---- the schedule: a start for a few thousand images --------------------------------
# From random weights AdamW with a short warm-up learns far faster than the COCO
# recipe's SGD (which needs hundreds of epochs). From pretrained weights see the
# README's fine-tuning guidance for the lr and the frozen stages.
batch_size = 16
max_iters = 2000
val_interval = 500
lr = 4e-3
frozen_stages = -1  # blocks 0..N keep their weights (-1: none; from pretrained only)

metainfo = dict(classes=classes)
model = dict(
    backbone=dict(
        frozen_stages=frozen_stages,
        init_cfg=dict(type='Pretrained', checkpoint=backbone_weights,
                      prefix='backbone.') if backbone_weights else None),
    bbox_head=dict(
        num_classes=len(classes),
        anchor_generator=dict(input_size=input_size)),
    test_cfg=dict(score_thr=0.05, max_per_img=100))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann_file,
        data_prefix=dict(img=train_img_dir),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=val_ann_file,
        data_prefix=dict(img=val_img_dir),
        pipeline=test_pipeline))
test_dataloader = val_dataloader  # the test set too: set its files here if it differs
val_evaluator = dict(ann_file=data_root + val_ann_file)
test_evaluator = val_evaluator

train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=val_interval)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=min(50, max_iters)),
    dict(type='CosineAnnealingLR', begin=0, T_max=max_iters, end=max_iters,
         by_epoch=False, eta_min=lr * 0.01)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0))
default_hooks = dict(
    # val metrics at their iteration (mmengine's default: at epoch 0 in an iter loop)
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval,
                    max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)
randomness = dict(seed=0)  # the same run twice on one machine
