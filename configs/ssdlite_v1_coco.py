# SSDLite + MobileNetV1 1.0, 320x320, COCO: Table 6, row "V1".
# V1 has no expansion layers: C4 = output of block 11 (512 ch, stride 16),
# C5 = output of block 13 (1024 ch, stride 32), as the TF ssd_mobilenet_v1 extractor.
_base_ = './ssdlite_v3_large_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mobilenet_tasks.MobileNetV1',
        out_indices=(11, 13),
        norm_cfg={{_base_.norm_cfg}}))
