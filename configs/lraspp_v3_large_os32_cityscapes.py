# LR-ASPP + MobileNetV3-Large, RF2, F=128, output stride 32 (no atrous convolution):
# the paper's Table 8 "V3 OS32" (72.0 mIoU test, 7.74B MAdds at 1024x2048).
# At stride 32 a 769x769 crop gives a 25x25 map, under the 49x49 pooling kernel, so the
# gate pools globally while training; at 1024x2048 (a 32x64 map) it must too.
_base_ = './lraspp_v3_large_cityscapes.py'

model = dict(
    backbone=dict(output_stride=32),
    decode_head=dict(global_pool=True))
