# MobileNetV3-Small 0.75 on ImageNet-1k: Table 3, row "V3-Small 0.75".
_base_ = './mobilenet-v3-small_8xb128_in1k.py'

widen_factor = 0.75
last_channels = 432  # 6 x make_divisible(96 * 0.75, 8)

model = dict(
    backbone=dict(widen_factor=widen_factor),
    head=dict(in_channels=last_channels))
