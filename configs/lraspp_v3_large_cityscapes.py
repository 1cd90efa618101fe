# LR-ASPP + MobileNetV3-Large, RF2, F=128, output stride 16, on Cityscapes: the paper's
# Table 7 row 8 (72.36 mIoU val, 1.51M params, 9.74B MAdds at 1024x2048) and Table 8
# "V3 OS16" (72.6 mIoU test). The paper's final segmentation model.
# Head (Figure 10, mobilenet_tasks.LRASPPHead): on the last feature, a 1x1 conv + BN +
# ReLU with F filters, gated by 49x49 / stride (16, 20) average pooling + 1x1 conv +
# sigmoid; upsampled to the output-stride-8 feature and classified; plus a classifier on
# that low-level feature; the two logits summed.
# RF2: blocks 13-15 and the final conv have half their channels and block 13 half its
# expansion (TF DeepLab's mobilenet_v3_large_seg).
# Low-level feature: the output of block 6, the last block at output stride 8 (40 ch).
# (TF DeepLab taps that block's depthwise output, 120 ch; torchvision block 4's output.)
# Every LR-ASPP config uses RF2 and F=128 unless its name says otherwise.
_base_ = './_base_/segmentation_cityscapes.py'

norm_cfg = {{_base_.norm_cfg}}
model = dict(
    backbone=dict(
        type='mobilenet_tasks.MobileNetV3',
        arch='large',
        reduced_tail=True,  # RF2
        halve_c4_expansion=True,  # RF2 as TF DeepLab builds it (block 13: 336)
        output_stride=16,  # atrous convolution in the last block
        out_indices=(6, 16),  # low: block 6 (stride 8); high: final conv (480 ch)
        norm_cfg=norm_cfg),
    decode_head=dict(
        type='mobilenet_tasks.LRASPPHead',  # the paper's; mmseg's LRASPPHead differs
        channels=128,  # F
        pool_kernel=(49, 49),  # a 769x769 training crop's whole map at stride 16
        pool_stride=(16, 20),
        dropout_ratio=0.1,
        num_classes={{_base_.num_classes}},
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
            avg_non_ignore=True)))  # DeepLab averages over labelled pixels
