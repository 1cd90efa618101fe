# SSDLite + MobileNetV3-Large†, 320x320, COCO: Table 6, row "V3†" (reduced tail: the
# C4 block's output and every later block halved; C5 = 480 channels).
_base_ = './ssdlite_v3_large_coco.py'

model = dict(backbone=dict(reduced_tail=True))
