# SSDLite + MobileNetV3-Large 1.0, 320x320, COCO: the paper's Table 6, row "V3".
# C4 = expansion of block 13 (672 ch, stride 16), C5 = final conv (960 ch, stride 32).
# From scratch; for an ImageNet-initialised backbone, convert a checkpoint with
# tools/model_converters/ and set
#   model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')
# Params/MAdds vs the paper: we predict 80 COCO classes, the paper 90 + background.
_base_ = './_base_/ssdlite_320_coco.py'
