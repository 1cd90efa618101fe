"""Converters of reference MobileNet checkpoints (torchvision, timm, mmpretrain) to ours.

Each ``convert_*`` takes the reference state dict and returns ours: ``backbone.<key>``
and, when the source has a classifier, ``head.<key>`` of the matching mmpretrain head,
ready for ``torch.save({'state_dict': ..., 'meta': ...})`` and
``mmengine.runner.load_checkpoint(model, path, strict=True)``. The arch (and width and
reduced tail) is inferred from the keys and shapes unless given; a state dict of another
arch raises ValueError saying what differs. The tools in ``tools/model_converters/`` are
the command-line front ends.

Modules: ``layout`` (a MobileNet's positions, written as our keys), ``matching`` (which
of our backbones a converted state dict is), ``info`` (what a conversion found, and our
config of that backbone), one module per source (``torchvision``, ``timm``,
``mmpretrain``, ``torchvision_ssdlite``, ``torchvision_lraspp``), ``pretrained`` (the
``mobilenet_tasks://`` checkpoint addresses: download, convert and cache a source's
weights for ``init_cfg`` / ``load_from``) and ``cli`` (the tools' arguments, loading
and saving; the only place that exits).
"""
from .info import ConversionInfo
from .layout import TARGET_EPS, fold_bn_eps
from .mmpretrain import MMPRETRAIN_ARCHS, convert_mmpretrain_mobilenet_v3
from .pretrained import (PretrainedError, fetch_config_weights, fetch_pretrained,
                         parse_address)
from .timm import TIMM_ARCHS, convert_timm
from .torchvision import TORCHVISION_ARCHS, convert_torchvision
from .torchvision_lraspp import (TORCHVISION_LRASPP_CONFIG, LRASPPConversionInfo,
                                 convert_torchvision_lraspp)
from .torchvision_ssdlite import (COCO_CATEGORY_IDS, TORCHVISION_SSDLITE_CONFIG,
                                  SSDLiteConversionInfo, convert_torchvision_ssdlite)

__all__ = [
    'TARGET_EPS', 'ConversionInfo', 'fold_bn_eps', 'convert_torchvision',
    'TORCHVISION_ARCHS', 'convert_timm', 'TIMM_ARCHS', 'convert_mmpretrain_mobilenet_v3',
    'MMPRETRAIN_ARCHS'
]
__all__ += ['convert_torchvision_ssdlite', 'SSDLiteConversionInfo', 'COCO_CATEGORY_IDS',
            'TORCHVISION_SSDLITE_CONFIG']
__all__ += ['convert_torchvision_lraspp', 'LRASPPConversionInfo',
            'TORCHVISION_LRASPP_CONFIG']
__all__ += ['fetch_pretrained', 'fetch_config_weights', 'parse_address',
            'PretrainedError']
