# LR-ASPP + MobileNetV2, RF2, F=128: Table 7 row 4 (72.74 mIoU val, 0.98M params, 12.57B
# MAdds at 1024x2048). Low-level feature: block 6, the last block at output stride 8
# (32 ch); high: block 17 (160 ch with RF2). Head: see lraspp_v3_large_cityscapes.py.
_base_ = './lraspp_v3_large_cityscapes.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MobileNetV2',
        widen_factor=1.0,
        reduced_tail=True,  # RF2
        output_stride=16,
        with_last_conv=False,  # TF DeepLab's MobileNetV2 ends at block 17
        out_indices=(6, 17),
        norm_cfg={{_base_.norm_cfg}}))
