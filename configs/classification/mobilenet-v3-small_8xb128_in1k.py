# MobileNetV3-Small 1.0 on ImageNet-1k: Table 3, row "V3-Small 1.0".
# Recipe: mmpretrain's MobileNetV3-Small config (8 GPUs x 128), our backbone; head as the
# paper's (1x1 to 1024 with h-swish, no BN, dropout 0.2, classifier).
_base_ = 'mmpretrain::mobilenet_v3/mobilenet-v3-small_8xb128_in1k.py'
custom_imports = dict(imports=['mobilenet_tasks'], allow_failed_imports=False)

widen_factor = 1.0  # width multiplier
last_channels = 576  # final 1x1 conv: 6 x make_divisible(96 * widen_factor, 8)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MobileNetV3',
        arch='small',
        widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
