# MobileNetV2 0.35 on ImageNet-1k: Table 3, row "V2 0.35".
_base_ = './mobilenet-v2_8xb32_in1k.py'

widen_factor = 0.35  # the final conv keeps 1280 below width 1

model = dict(backbone=dict(widen_factor=widen_factor))
