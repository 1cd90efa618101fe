# R-ASPP + MobileNetV2, F=256, output stride 16: the paper's Table 7 row 1 (72.84 mIoU
# val, 2.11M params, 21.29B MAdds at 1024x2048), the baseline of the MobileNetV2 paper.
# The backbone ends at block 17 (320 ch), as TF DeepLab's MobileNetV2 feature extractor:
# no final 1280-channel conv.
_base_ = './raspp_v3_large_cityscapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MobileNetV2',
        widen_factor=1.0,
        reduced_tail=False,
        output_stride=16,  # atrous convolution from block 14 on
        with_last_conv=False,
        out_indices=(17, ),
        norm_cfg={{_base_.norm_cfg}}))
