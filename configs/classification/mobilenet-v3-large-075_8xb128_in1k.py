# MobileNetV3-Large 0.75 on ImageNet-1k: Table 3, row "V3-Large 0.75".
_base_ = './mobilenet-v3-large_8xb128_in1k.py'

widen_factor = 0.75
last_channels = 720  # 6 x make_divisible(160 * 0.75, 8)

model = dict(
    backbone=dict(widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
