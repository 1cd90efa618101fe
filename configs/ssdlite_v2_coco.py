# SSDLite + MobileNetV2 1.0, 320x320, COCO: Table 6, row "V2".
# C4 = expansion of block 14 ("layer_15/expansion_output", 576 ch), C5 = 1280-ch conv.
_base_ = './ssdlite_v3_large_coco.py'

widen_factor = 1.0  # width multiplier
extra_channels = (512, 256, 256, 128)  # TF: int(depth * widen_factor), at least 16

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MobileNetV2',
        widen_factor=widen_factor,
        scale_last_conv=True,  # TF's detection extractor scales C5 (1280) by the width
        expansion_indices=(14, ),
        out_indices=(18, ),
        norm_cfg={{_base_.norm_cfg}}),
    neck=dict(extra_channels=extra_channels))
