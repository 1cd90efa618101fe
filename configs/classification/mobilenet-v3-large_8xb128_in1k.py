# MobileNetV3-Large 1.0 on ImageNet-1k: the paper's Table 3, row "V3-Large 1.0".
# Recipe and data pipeline: mmpretrain's own MobileNetV3-Large config (8 GPUs x 128),
# with its backbone swapped for ours; its head is the paper's (pool, 1x1 to 1280 with
# h-swish and no BN, dropout 0.2, classifier).
_base_ = 'mmpretrain::mobilenet_v3/mobilenet-v3-large_8xb128_in1k.py'
custom_imports = dict(imports=['mobilenet_tasks'], allow_failed_imports=False)

widen_factor = 1.0  # width multiplier
last_channels = 960  # final 1x1 conv: 6 x make_divisible(160 * widen_factor, 8)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MobileNetV3',
        arch='large',
        widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
