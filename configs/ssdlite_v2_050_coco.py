# SSDLite + MobileNetV2 0.5, 320x320, COCO: Table 6, row "V2 0.5".
_base_ = './ssdlite_v2_coco.py'

widen_factor = 0.5
extra_channels = (256, 128, 128, 64)  # TF: int(depth * 0.5)

model = dict(
    backbone=dict(widen_factor=widen_factor),
    neck=dict(extra_channels=extra_channels))
