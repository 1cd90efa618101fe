# SSDLite + MnasNet-A1 1.0, 320x320, COCO: Table 6, row "MnasNet".
# C4 = expansion of block 13 (672 ch, stride 16), C5 = the 1280-ch conv.
_base_ = './ssdlite_v3_large_coco.py'

widen_factor = 1.0  # width multiplier
extra_channels = (512, 256, 256, 128)  # TF: int(depth * widen_factor), at least 16

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MnasNet',
        widen_factor=widen_factor,
        scale_last_conv=True,  # C5 scaled by the width, as the TF extractors do
        expansion_indices=(13, ),
        out_indices=(17, ),
        norm_cfg={{_base_.norm_cfg}}),
    neck=dict(extra_channels=extra_channels))
