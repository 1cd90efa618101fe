# LR-ASPP + MobileNetV2, RF2, F=256: Table 7 row 3 (72.97 mIoU val, 1.02M params, 12.83B
# MAdds at 1024x2048).
_base_ = './lraspp_v2_cityscapes.py'

model = dict(decode_head=dict(channels=256))  # F
