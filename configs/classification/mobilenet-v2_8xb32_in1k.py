# MobileNetV2 1.0 on ImageNet-1k: Table 3, row "V2 1.0".
# Recipe: mmpretrain's MobileNetV2 config (8 GPUs x 32), our backbone.
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
custom_imports = dict(imports=['mobilenet_tasks'], allow_failed_imports=False)

widen_factor = 1.0  # width multiplier
last_channels = 1280  # final 1x1 conv: make_divisible(1280 * max(1, widen_factor), 8)

model = dict(
    backbone=dict(
        _delete_=True, type='mobilenet_tasks.MobileNetV2', widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
