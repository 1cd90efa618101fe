# LR-ASPP + MobileNetV2 0.5, RF2, F=128: Table 7 row 9 (68.57 mIoU val, 0.28M params,
# 4.00B MAdds at 1024x2048).
_base_ = './lraspp_v2_cityscapes.py'

model = dict(backbone=dict(widen_factor=0.5))
