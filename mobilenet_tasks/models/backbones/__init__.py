from .base_mobilenet import BaseMobileNet, BlockSpec, make_divisible
from .mnasnet import MnasNet
from .mobilenet_v1 import MobileNetV1
from .mobilenet_v2 import MobileNetV2
from .mobilenet_v3 import MobileNetV3

__all__ = [
    'BaseMobileNet', 'BlockSpec', 'make_divisible', 'MobileNetV3', 'MobileNetV2',
    'MnasNet', 'MobileNetV1'
]
