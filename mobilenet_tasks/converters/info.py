"""What a classifier conversion found (:class:`ConversionInfo`) and which of our configs
builds its backbone.

Which config builds which backbone is not written here: the model index says which
config builds which row of the paper's Table 3 (``Paper: {Table: '3', Row: ...}`` in
``configs/classification/metafile.yml``; the rows are in
:mod:`mobilenet_tasks.utils.paper`) and each config says its backbone and head;
:func:`classification_configs` reads both.
"""
import importlib.util
import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from mobilenet_tasks.utils.model_index import ROOT, load_model_index

from .layout import StateDict
from .matching import Candidate

#: The paper table whose rows are the classifiers (ImageNet, 224x224).
CLASSIFICATION_TABLE = '3'
#: The head arguments a converted head is described by (``ConversionInfo.head``).
_HEAD_ARGS = ('type', 'in_channels', 'mid_channels', 'num_classes')


def _backbone_key(type_name: str, kwargs: dict) -> tuple:
    """``type_name`` and every argument of its constructor that has a default (the
    arch, the width, the tail, ...), given or defaulted: two backbones with the same key
    have the same state dict."""
    from mobilenet_tasks.models import backbones
    params = inspect.signature(getattr(backbones, type_name)).parameters.values()
    return (type_name, ) + tuple((p.name, kwargs.get(p.name, p.default))
                                 for p in params if p.default is not p.empty)


@lru_cache(maxsize=None)
def classification_configs() -> Dict[tuple, Tuple[str, dict]]:
    """Our classification configs by the backbone they build.

    Returns:
        dict: :func:`_backbone_key` of the backbone -> the config (relative to the
        checkout, e.g. ``'configs/classification/mobilenet-v2_8xb32_in1k.py'``) and its
        head (``type``, ``in_channels``, ``mid_channels``, ``num_classes``), for every
        model-index entry that builds a row of Table 3. Empty without a checkout (no
        ``model-index.yml``) or without mmpretrain (which the configs build on).
    """
    if importlib.util.find_spec('mmpretrain') is None:
        return {}
    try:
        entries = load_model_index()
    except FileNotFoundError:
        return {}
    from mobilenet_tasks.utils.config import load_config
    configs = {}
    for entry in entries:
        paper = entry.get('Paper')
        if not paper or str(paper['Table']) != CLASSIFICATION_TABLE:
            continue
        model = load_config(entry['Config']).model.to_dict()
        backbone, head = dict(model['backbone']), model['head']
        key = _backbone_key(backbone.pop('type').rpartition('.')[2], backbone)
        head = {k: head[k] for k in _HEAD_ARGS if k in head}
        head['type'] = head['type'].rpartition('.')[2]
        if 'mid_channels' in head:
            head['mid_channels'] = list(head['mid_channels'])
        config = Path(entry['Config']).resolve().relative_to(ROOT).as_posix()
        configs.setdefault(key, (config, head))
    return configs


@dataclass
class ConversionInfo:
    """What a conversion found and did.

    Attributes:
        source (str): ``'torchvision'``, ``'timm'`` or ``'mmpretrain'``.
        arch (str): The source arch, as ``--arch`` takes it.
        backbone (Candidate): Our backbone the state dict loads into.
        head (dict, optional): The mmpretrain head the ``head.*`` tensors load into;
            None if no head was converted.
        key_map (dict): Our key (with ``backbone.`` / ``head.``) -> source key.
        notes (list[str]): Anything the user should know.
    """
    source: str
    arch: str
    backbone: Candidate
    head: Optional[dict] = None
    key_map: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def _config_entry(self) -> Tuple[Optional[str], Optional[dict]]:
        return classification_configs().get(_backbone_key(self.backbone.type,
                                                          dict(self.backbone.kwargs)),
                                            (None, None))

    @property
    def config(self) -> Optional[str]:
        """Our classification config that builds this backbone, if any."""
        return self._config_entry()[0]

    @property
    def config_head(self) -> Optional[dict]:
        """The head that config builds, if any."""
        return self._config_entry()[1]

    def meta(self) -> Dict[str, Union[str, int]]:
        """The checkpoint's ``meta``: plain str and int values only."""
        return dict(
            converted_from=self.source,
            source_arch=self.arch,
            backbone=format_cfg(self.backbone.cfg),
            head=format_cfg(self.head) if self.head else 'none',
            config=self.config or '',
            num_tensors=len(self.key_map),
            notes=' '.join(self.notes))


def format_cfg(cfg: dict) -> str:
    """``dict(type='X', a=1)``, as a config file writes it."""
    return 'dict(' + ', '.join(f'{k}={v!r}' for k, v in cfg.items()) + ')'


def finish(info: ConversionInfo, backbone: StateDict, head: StateDict,
           head_cfg: Optional[dict], source_eps: float, target_eps: float
           ) -> StateDict:
    """Prefix ``backbone.`` / ``head.``, record the head and the notes in ``info``, and
    check the head fits the backbone's output channels."""
    out = {f'backbone.{k}': v for k, v in backbone.items()}
    out.update({f'head.{k}': v for k, v in head.items()})
    info.key_map = {f'backbone.{k}': v for k, v in info.key_map.items()}
    info.head = head_cfg
    if head_cfg is not None:
        channels = output_channels(backbone)
        if head_cfg['in_channels'] != channels:
            raise ValueError(f'the classifier takes {head_cfg["in_channels"]} channels '
                             f'but the backbone gives {channels}')
        if info.config_head is not None and head_cfg != info.config_head:
            info.notes.append(
                f'The head differs from the one of {info.config} '
                f'({format_cfg(info.config_head)}): override model.head to load it.')
    elif info.config:
        info.notes.append('No head converted: the backbone loads strictly, the '
                          'classifier with strict=False.')
    if source_eps != target_eps:
        info.notes.append(f'The source BN eps {source_eps:g} is folded into the BN '
                          f'weights for our eps {target_eps:g} (exact in eval mode).')
    return out


def output_channels(backbone: StateDict) -> int:
    """Channels of the last layer of our backbone state dict (the final conv's, or the
    last block's where there is none)."""
    last = max(int(k.split('.')[1]) for k in backbone)
    for key in (f'layers.{last}.bn.running_mean',
                f'layers.{last}.project_conv.bn.running_mean'):
        if key in backbone:
            return backbone[key].shape[0]
    raise ValueError(f'layer {last} of the backbone is neither a conv nor a block')


__all__ = ['ConversionInfo', 'classification_configs', 'format_cfg', 'finish',
           'output_channels']
