# LR-ASPP + MobileNetV2 0.35, RF2, F=128: Table 7 row 10 (66.83 mIoU val, 0.16M params,
# 2.54B MAdds at 1024x2048).
_base_ = './lraspp_v2_cityscapes.py'

model = dict(backbone=dict(widen_factor=0.35))
