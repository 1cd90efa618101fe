# MobileNetV1 1.0 on ImageNet-1k (the baseline of Table 6; not a Table 3 row).
# Recipe: mmpretrain's MobileNetV2 one (8 GPUs x 32, SGD), our backbone.
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
custom_imports = dict(imports=['mobilenet_tasks'], allow_failed_imports=False)

widen_factor = 1.0  # width multiplier
last_channels = 1024  # block 13: make_divisible(1024 * widen_factor, 8); no final conv

model = dict(
    backbone=dict(
        _delete_=True, type='mobilenet_tasks.MobileNetV1', widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
