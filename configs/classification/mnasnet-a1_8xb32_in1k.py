# MnasNet-A1 on ImageNet-1k: Table 3, row "MnasNet-A1".
# mmpretrain has no MnasNet recipe; this uses its MobileNetV2 one (8 GPUs x 32, SGD,
# the same data pipeline). The MnasNet paper trained with RMSProp for 350 epochs.
_base_ = 'mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py'
custom_imports = dict(imports=['mobilenet_tasks'], allow_failed_imports=False)

widen_factor = 1.0  # width multiplier
last_channels = 1280  # final 1x1 conv, not scaled by width

model = dict(
    backbone=dict(
        _delete_=True, type='mobilenet_tasks.MnasNet', widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
