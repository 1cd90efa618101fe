# LR-ASPP + MobileNetV3-Large, RF2, F=256: Table 7 row 7 (72.37 mIoU val, 1.63M params,
# 10.33B MAdds at 1024x2048).
_base_ = './lraspp_v3_large_cityscapes.py'

model = dict(decode_head=dict(channels=256))  # F
