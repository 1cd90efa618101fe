# SSDLite + MobileNetV3-Small, 320x320, COCO: Table 6, row "V3-Small".
# C4 = expansion of block 9 (288 ch, stride 16), C5 = final conv (576 ch, stride 32).
_base_ = './ssdlite_v3_large_coco.py'

model = dict(
    backbone=dict(arch='small', expansion_indices=(9, ), out_indices=(12, )))
