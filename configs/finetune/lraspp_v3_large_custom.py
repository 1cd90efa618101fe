# Fine-tune LR-ASPP + MobileNetV3-Large (the paper's Table 7 row 8) on your own semantic
# segmentation dataset: images and label maps (PNG, one class index a pixel, 255 =
# ignored) in two folders, as mmseg's BaseSegDataset reads them. Copy this file (keep it
# in configs/finetune/, or point `_base_` at this checkout's
# configs/lraspp_v3_large_cityscapes.py), set the values of the first block, and train:
#     python tools/train.py configs/finetune/my_data.py
#     python tools/test.py configs/finetune/my_data.py work_dirs/my_data/iter_N.pth
# Everything else follows from those values: num_classes and the class names, the crop
# of the train pipeline and the data preprocessor, the test resize, the loaders' folders,
# and the head's pooling window. Set them here, not in a child config: a variable set in
# a child config does not reach the dicts this file has already built from it.
_base_ = '../lraspp_v3_large_cityscapes.py'

# ---- your data: set these ------------------------------------------------------------
data_root = 'data/my_dataset/'
train_img_dir, train_ann_dir = 'images/train', 'labels/train'  # relative to data_root
val_img_dir, val_ann_dir = 'images/val', 'labels/val'
img_suffix, seg_map_suffix = '.jpg', '.png'  # an image and its label map share the stem
classes = ('background', 'road', 'car')  # label value i is classes[i]
crop_size = (512, 512)  # (h, w) of the training crops
test_scale = (1024, 512)  # (w, h) the val/test images are resized to (keep ratio)

# ---- where training starts: pretrained weights -----------------------------------------
# None: random weights. ImageNet weights for the backbone, downloaded, converted and
# cached on first use (docs: README, "Pretrained starts"):
# 'mobilenet_tasks://torchvision/mobilenet_v3_large' or
# 'mobilenet_tasks://timm/mobilenetv3_large_100'. They have the full tail: set
# reduced_tail = False with them, or blocks 13-16 (RF2 halves them) start anew.
backbone_weights = None
reduced_tail = True  # the paper's RF2 (no ImageNet weights of it are published)
# A whole segmenter to start from; its classifiers start anew if the classes differ.
# torchvision's LR-ASPP (COCO, VOC labels) has torchvision's architecture: with it set
# _base_ = '../lraspp_v3_large_torchvision_voc.py',
# load_from = 'mobilenet_tasks://torchvision/lraspp_mobilenet_v3_large',
# reduced_tail = False, and delete the pool_kernel line of decode_head below (it pools
# globally).
load_from = None

# ---- the schedule: a start for a few hundred images ---------------------------------
batch_size = 8
max_iters = 4000
val_interval = 500
lr = 4e-3  # AdamW; from pretrained weights see the README's fine-tuning guidance
frozen_stages = -1  # blocks 0..N keep their weights (-1: none; from pretrained only)
# BN momentum 0.1, not the Cityscapes recipe's 0.003 (TF's 0.997, right for 100k+
# iterations): in a short run the running statistics must follow weights that change
# fast (measured on the demo data: 0.003 left them near their start and scored 22 mIoU
# on images the model had learned, 0.1 scored 89). One process: BN, not SyncBN.
norm_cfg = dict(type='BN', eps=0.001, momentum=0.1)

metainfo = dict(classes=classes)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        norm_cfg=norm_cfg,
        frozen_stages=frozen_stages,
        reduced_tail=reduced_tail,
        halve_c4_expansion=reduced_tail,
        init_cfg=dict(type='Pretrained', checkpoint=backbone_weights,
                      prefix='backbone.') if backbone_weights else None),
    # The paper's gate pools 49x49, the whole map of its 769x769 crops at output
    # stride 16; 'crop' derives the window from this crop as TF DeepLab does
    # (ceil(crop / 16) per side), so it is the same gate at any crop size.
    decode_head=dict(num_classes=len(classes), norm_cfg=norm_cfg,
                     pool_kernel='crop', crop_size=crop_size, output_stride=16))

dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
               reduce_zero_label=False)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=test_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        _delete_=True, **dataset, pipeline=train_pipeline,
        data_prefix=dict(img_path=train_img_dir, seg_map_path=train_ann_dir)))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        _delete_=True, **dataset, pipeline=test_pipeline, test_mode=True,
        data_prefix=dict(img_path=val_img_dir, seg_map_path=val_ann_dir)))
test_dataloader = val_dataloader  # the test set too: set its folders here if it differs

train_cfg = dict(max_iters=max_iters, val_interval=val_interval)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=min(50, max_iters)),
    dict(type='PolyLR', eta_min=lr * 0.01, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0))
default_hooks = dict(
    checkpoint=dict(interval=val_interval, max_keep_ckpts=2))
auto_scale_lr = dict(enable=False, base_batch_size=batch_size)
randomness = dict(seed=0)  # the same run twice on one machine
