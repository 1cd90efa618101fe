"""Convert an mmpretrain MobileNetV3 checkpoint (arch ``large``, ``small`` or
``small_075``) to ours.

    python tools/model_converters/mmpretrain_mobilenet_v3.py \
        mobilenet-v3-large_8xb128_in1k_20221114-0ed9ed9a.pth \
        mobilenet-v3-large_mmpretrain.pth

SRC is an mmpretrain checkpoint (``state_dict`` with ``backbone.layer0...`` and
``head.*``); its ``backbone.layerN`` become our ``backbone.layers.N`` and its head, the
same StackedLinearClsHead as our configs', is copied unchanged.
"""
from mobilenet_tasks.converters.cli import run_cli
from mobilenet_tasks.converters.mmpretrain import (MMPRETRAIN_ARCHS,
                                                   convert_mmpretrain_mobilenet_v3)


def main(argv=None):
    run_cli('Convert an mmpretrain MobileNetV3 checkpoint to mobilenet_tasks',
            convert_mmpretrain_mobilenet_v3, MMPRETRAIN_ARCHS, argv)


if __name__ == '__main__':
    main()
