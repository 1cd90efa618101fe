# R-ASPP + MobileNetV3-Large, RF2, F=256, output stride 16: Table 7 row 6 (71.91 mIoU
# val, 1.76M params, 11.24B MAdds at 1024x2048).
# R-ASPP (the MobileNetV2 paper's reduced ASPP, mobilenet_tasks.RASPPHead): a 1x1 conv
# branch and an image-pooling branch on the last feature, concatenated, projected by a
# 1x1 conv and classified at output stride 16.
_base_ = './lraspp_v3_large_cityscapes.py'

model = dict(
    backbone=dict(out_indices=(16, )),  # the final conv only
    decode_head=dict(
        _delete_=True,
        type='mobilenet_tasks.RASPPHead',
        channels=256,  # F
        dropout_ratio=0.1,  # TF DeepLab: dropout (keep 0.9) after the projection
        num_classes={{_base_.num_classes}},
        norm_cfg={{_base_.norm_cfg}},
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
            avg_non_ignore=True)))  # DeepLab averages over labelled pixels
