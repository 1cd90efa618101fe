# R-ASPP + MobileNetV3-Large without RF2, F=256, output stride 16: Table 7 row 5 (72.64
# mIoU val, 3.60M params, 18.43B MAdds at 1024x2048).
_base_ = './raspp_v3_large_reduced_cityscapes.py'

model = dict(backbone=dict(reduced_tail=False, halve_c4_expansion=False))
