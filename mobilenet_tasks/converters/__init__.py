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

The names below load on first access (PEP 562): importing a module of this package
(``cli`` to build a tool's parser, ``pretrained`` for its checkpoint loader) does not
import every converter and torch.
"""
from mobilenet_tasks.utils.lazy import lazy_attributes

# name -> the module of this package that defines it
_LAZY = {
    'ConversionInfo': '.info',
    'TARGET_EPS': '.layout', 'fold_bn_eps': '.layout',
    'MMPRETRAIN_ARCHS': '.mmpretrain', 'convert_mmpretrain_mobilenet_v3': '.mmpretrain',
    'PretrainedError': '.pretrained', 'fetch_config_weights': '.pretrained',
    'fetch_pretrained': '.pretrained', 'parse_address': '.pretrained',
    'TIMM_ARCHS': '.timm', 'convert_timm': '.timm',
    'TORCHVISION_ARCHS': '.torchvision', 'convert_torchvision': '.torchvision',
    'TORCHVISION_LRASPP_CONFIG': '.torchvision_lraspp',
    'LRASPPConversionInfo': '.torchvision_lraspp',
    'convert_torchvision_lraspp': '.torchvision_lraspp',
    'COCO_CATEGORY_IDS': '.torchvision_ssdlite',
    'TORCHVISION_SSDLITE_CONFIG': '.torchvision_ssdlite',
    'SSDLiteConversionInfo': '.torchvision_ssdlite',
    'convert_torchvision_ssdlite': '.torchvision_ssdlite',
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())

__all__ = list(_LAZY)
