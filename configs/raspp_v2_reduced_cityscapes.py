# R-ASPP + MobileNetV2, RF2, F=256: Table 7 row 2 (72.56 mIoU val, 1.15M params, 13.68B
# MAdds at 1024x2048). RF2: blocks 14-17 have half their channels (80, 80, 80, 160).
_base_ = './raspp_v2_cityscapes.py'

model = dict(backbone=dict(reduced_tail=True))
