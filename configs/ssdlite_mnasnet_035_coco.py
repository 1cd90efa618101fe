# SSDLite + MnasNet-A1 0.35, 320x320, COCO: Table 6, row "MnasNet 0.35".
_base_ = './ssdlite_mnasnet_coco.py'

widen_factor = 0.35
extra_channels = (179, 89, 89, 44)  # TF: int(depth * 0.35)

model = dict(
    backbone=dict(widen_factor=widen_factor),
    neck=dict(extra_channels=extra_channels))
