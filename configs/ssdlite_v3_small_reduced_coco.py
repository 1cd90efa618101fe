# SSDLite + MobileNetV3-Small†, 320x320, COCO: Table 6, row "V3-Small†".
_base_ = './ssdlite_v3_small_coco.py'

model = dict(backbone=dict(reduced_tail=True))
