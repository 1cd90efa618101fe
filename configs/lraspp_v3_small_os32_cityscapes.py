# LR-ASPP + MobileNetV3-Small, RF2, F=128, output stride 32: Table 8 "V3-Small OS32"
# (68.3 mIoU test, 2.06B MAdds at 1024x2048). Global pooling: see
# lraspp_v3_large_os32_cityscapes.py.
_base_ = './lraspp_v3_small_cityscapes.py'

model = dict(
    backbone=dict(output_stride=32),
    decode_head=dict(global_pool=True))
