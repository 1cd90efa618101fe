# LR-ASPP + MobileNetV3-Small, RF2, F=128, output stride 16: Table 7 row 11 (68.38 mIoU
# val, 0.47M params, 2.90B MAdds at 1024x2048) and Table 8 "V3-Small OS16" (69.4 test).
# RF2: blocks 9-11 and the final conv have half their channels and block 9 half its
# expansion (TF DeepLab's mobilenet_v3_small_seg). Low-level feature: block 3, the last
# block at output stride 8 (24 ch).
_base_ = './lraspp_v3_large_cityscapes.py'

model = dict(
    backbone=dict(
        arch='small',
        out_indices=(3, 12)))  # low: block 3 (stride 8); high: final conv (288 ch)
