"""Pretrained starts: ``mobilenet_tasks://SOURCE/NAME`` checkpoints, downloaded through
the source library's own URL and cache, converted to our layout once and cached.

Any mmengine checkpoint path may be one of these, so a config starts from torchvision's
or timm's ImageNet backbones, or from torchvision's COCO SSDLite / LR-ASPP, with no
manual conversion::

    model = dict(backbone=dict(init_cfg=dict(
        type='Pretrained', prefix='backbone.',
        checkpoint='mobilenet_tasks://torchvision/mobilenet_v3_large')))
    load_from = 'mobilenet_tasks://torchvision/ssdlite320_mobilenet_v3_large'

``SOURCE/NAME`` is one of

- ``torchvision/<builder>[.<weights>]``: ``mobilenet_v3_large``, ``mobilenet_v3_small``,
  ``mobilenet_v2`` (ImageNet; ``.IMAGENET1K_V1`` or ``.IMAGENET1K_V2`` picks the weights
  enum member, default ``DEFAULT``), ``ssdlite320_mobilenet_v3_large`` (COCO, into
  ``configs/ssdlite_v3_large_reduced_torchvision_coco.py``) and
  ``lraspp_mobilenet_v3_large`` (COCO with VOC labels, into
  ``configs/lraspp_v3_large_torchvision_voc.py``). Downloaded by
  ``torch.hub.load_state_dict_from_url`` from the weights enum's URL into torch hub's
  cache (``$TORCH_HOME/hub/checkpoints``), with its hash check.
- ``timm/<model>[.<tag>]``: ``mobilenetv3_large_100``, ``mobilenetv3_small_100``,
  ``mnasnet_a1``, ``semnasnet_100``, ``mobilenetv2_100`` ... (ImageNet). Downloaded by
  ``timm.create_model(..., pretrained=True)``: the Hugging Face hub and its cache, or
  the model's URL.

Query arguments: ``?url=URL`` downloads from another URL (a mirror, or ``file://`` for a
file on disk) through the same library and cache; ``?eps=E`` sets the BN eps of the
model that will load the weights (default 0.001, our configs'; the source's eps is
folded into the BN weights for it, as the converter tools do).

The converted checkpoint (``{'state_dict', 'meta'}``, as ``tools/model_converters/``
writes) is cached in ``$MOBILENET_TASKS_CACHE/converted`` (default
``~/.cache/mobilenet_tasks/converted``), named by the source and a digest of the
address, written atomically; later loads read it and download nothing. In a
distributed run rank 0 downloads and converts, the other ranks wait and read its cache.

mmengine's ``CheckpointLoader`` picks a loader by the path's prefix; importing this
module registers ours. The registry's model locations import it
(:mod:`mobilenet_tasks.registry`), so any config that builds one of our models has
it, and :func:`~mobilenet_tasks.utils.weights.load_weights` (``tools/test.py``, the
Inferencer) reads these addresses too.
"""
import hashlib
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

from .layout import TARGET_EPS
from .timm import convert_timm
from .torchvision import convert_torchvision
from .torchvision_lraspp import convert_torchvision_lraspp
from .torchvision_ssdlite import convert_torchvision_ssdlite

SCHEME = 'mobilenet_tasks://'
#: The environment variable that moves our cache (default ``~/.cache/mobilenet_tasks``).
CACHE_ENV = 'MOBILENET_TASKS_CACHE'
_QUERY_KEYS = ('url', 'eps')


class PretrainedError(ValueError):
    """A ``mobilenet_tasks://`` address that cannot be resolved, downloaded or
    converted; the message says what to write instead."""


def _backbone_only(convert: Callable) -> Callable:
    # A backbone start: the ImageNet classifier is not needed, and not converting it
    # keeps the checkpoint's keys to backbone.* (a Pretrained init_cfg with
    # prefix='backbone.' takes exactly those).
    def run(state_dict, target_eps):
        return convert(state_dict, with_head=False, target_eps=target_eps,
                       return_info=True)
    return run


#: torchvision builder -> the converter of its state dict.
TORCHVISION_MODELS: Dict[str, Callable] = {
    'mobilenet_v3_large': _backbone_only(convert_torchvision),
    'mobilenet_v3_small': _backbone_only(convert_torchvision),
    'mobilenet_v2': _backbone_only(convert_torchvision),
    'ssdlite320_mobilenet_v3_large': lambda sd, target_eps: convert_torchvision_ssdlite(
        sd, target_eps=target_eps, return_info=True),
    'lraspp_mobilenet_v3_large': lambda sd, target_eps: convert_torchvision_lraspp(
        sd, target_eps=target_eps, return_info=True),
}
#: timm model-name prefixes we convert (the timm converter's archs, any width).
TIMM_PREFIXES = ('mobilenetv3_large_', 'mobilenetv3_small_', 'mnasnet_a1',
                 'semnasnet_', 'mobilenetv2_')


@dataclass(frozen=True)
class PretrainedAddress:
    """A parsed ``mobilenet_tasks://SOURCE/NAME[.TAG][?url=...&eps=...]``."""
    text: str
    source: str  # 'torchvision' or 'timm'
    name: str  # the torchvision builder or the timm model name
    tag: Optional[str]  # torchvision weights enum member or timm pretrained tag
    url: Optional[str]  # another place to download from
    eps: float  # BN eps of the target model

    @property
    def cache_name(self) -> str:
        """The converted file's name: source, name, tag and a digest of everything
        that changes its content (the download address and the eps)."""
        digest = hashlib.sha256(f'{self.url}|{self.eps!r}'.encode()).hexdigest()[:10]
        tag = f'.{self.tag}' if self.tag else ''
        return f'{self.source}-{self.name}{tag}-{digest}.pth'


def _known() -> str:
    return (f'{SCHEME}torchvision/<{"|".join(TORCHVISION_MODELS)}>[.<weights>] or '
            f'{SCHEME}timm/<model>[.<tag>] (models starting '
            f'{", ".join(TIMM_PREFIXES)})')


def parse_address(text: str) -> PretrainedAddress:
    """Parse ``mobilenet_tasks://SOURCE/NAME[.TAG][?url=URL&eps=E]``.

    Raises:
        PretrainedError: Not such an address, an unknown source or model, or an
            unknown query argument; the message lists what is accepted.
    """
    if not text.startswith(SCHEME):
        raise PretrainedError(f'{text!r} is not a {SCHEME} address; write {_known()}')
    # (urlsplit takes no '_' in a scheme: split by hand)
    path, _, query_text = text[len(SCHEME):].partition('?')
    source, _, model = path.strip('/').partition('/')
    if source not in ('torchvision', 'timm') or not model or '/' in model:
        raise PretrainedError(f'{text}: unknown source {source!r}; write {_known()}')
    query = dict(parse_qsl(query_text, keep_blank_values=True))
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise PretrainedError(f'{text}: unknown argument(s) {", ".join(unknown)}; '
                              f'the arguments are {", ".join(_QUERY_KEYS)}')
    try:
        eps = float(query.get('eps', TARGET_EPS))
    except ValueError as e:
        raise PretrainedError(f'{text}: eps={query["eps"]!r} is not a number') from e
    name, _, tag = model.partition('.')
    if source == 'torchvision' and name not in TORCHVISION_MODELS:
        raise PretrainedError(f'{text}: torchvision model {name!r} has no converter '
                              f'here; write {_known()}')
    if source == 'timm' and not name.startswith(TIMM_PREFIXES):
        raise PretrainedError(f'{text}: timm model {name!r} has no converter here; '
                              f'write {_known()}')
    return PretrainedAddress(text, source, name, tag or None, query.get('url') or None,
                             eps)


def cache_dir() -> str:
    """Where converted checkpoints are kept: ``$MOBILENET_TASKS_CACHE/converted``,
    default ``~/.cache/mobilenet_tasks/converted``."""
    root = os.environ.get(CACHE_ENV) or osp.join(
        os.environ.get('XDG_CACHE_HOME') or osp.expanduser('~/.cache'), 'mobilenet_tasks')
    return osp.join(root, 'converted')


def _torchvision_state_dict(address: PretrainedAddress) -> Tuple[dict, str]:
    from torchvision.models import get_model_weights
    weights = get_model_weights(address.name)
    member = address.tag or 'DEFAULT'
    if member not in weights.__members__:
        raise PretrainedError(
            f'{address.text}: torchvision has no weights {member!r} for {address.name}; '
            f'it has {", ".join(weights.__members__)}')
    url = address.url or weights[member].url
    # torchvision's own download: torch hub's cache, and the hash in the file name
    # checked (a file:// or mirror URL of another name is not checked).
    try:
        state_dict = torch.hub.load_state_dict_from_url(url, map_location='cpu',
                                                        check_hash=True, progress=False)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a bad hash
        raise _download_error(address, url, e) from e
    return state_dict, url


def _download_error(address: PretrainedAddress, url: str,
                    error: Exception) -> PretrainedError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(
        error).__name__
    name = osp.basename(urlsplit(url).path) or 'the file'
    return PretrainedError(
        f'{address.text}: cannot download {url} ({reason}). Without internet here, '
        f'download {name} on another machine and write '
        f'{SCHEME}{address.source}/{address.name}{"." + address.tag if address.tag else ""}'
        f'?url=file:///path/to/{name}; or start from random weights (no init_cfg / '
        'load_from; backbone_weights = None in configs/finetune/).')


def _timm_state_dict(address: PretrainedAddress) -> Tuple[dict, str]:
    import timm
    name = f'{address.name}.{address.tag}' if address.tag else address.name
    if not timm.is_model(address.name):
        close = timm.list_models(f'{address.name.split("_")[0]}*')[:8]
        raise PretrainedError(f'{address.text}: timm has no model {address.name!r} '
                              f'(some it has: {", ".join(close)})')
    overlay = None
    if address.url:
        parts = urlsplit(address.url)
        # timm takes a local file as 'file' and downloads any other URL through torch
        # hub (as for its own URLs) once the Hugging Face id is cleared.
        overlay = (dict(file=parts.path, hf_hub_id=None) if parts.scheme == 'file'
                   else dict(url=address.url, hf_hub_id=None))
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    except OSError as e:  # no connection, no such file (Hugging Face's errors too)
        raise _download_error(address, address.url or f'timm weights of {name}',
                              e) from e
    except RuntimeError as e:  # timm: no pretrained weights for this name or tag
        raise PretrainedError(f'{address.text}: timm cannot load weights for {name} '
                              f'({str(e).splitlines()[0]})') from e
    cfg = model.pretrained_cfg
    where = address.url or cfg.get('hf_hub_id') or cfg.get('url') or name
    return model.state_dict(), where


def _convert(address: PretrainedAddress) -> dict:
    """Download the source weights and convert them: ``{'state_dict', 'meta'}``."""
    if address.source == 'torchvision':
        state_dict, where = _torchvision_state_dict(address)
        convert = TORCHVISION_MODELS[address.name]
    else:
        state_dict, where = _timm_state_dict(address)
        convert = _backbone_only(convert_timm)
    try:
        converted, info = convert(state_dict, target_eps=address.eps)
    except ValueError as e:
        raise PretrainedError(f'{address.text}: the weights from {where} do not '
                              f'convert: {e}') from e
    meta = dict(info.meta(), pretrained=address.text, downloaded_from=str(where))
    return dict(state_dict=converted, meta=meta)


def _save_atomically(checkpoint: dict, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp.{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _fetch(address: PretrainedAddress) -> str:
    path = osp.join(cache_dir(), address.cache_name)
    if not osp.isfile(path):
        checkpoint = _convert(address)
        _save_atomically(checkpoint, path)
        print_log(f'{address.text}: converted {len(checkpoint["state_dict"])} tensors '
                  f'from {checkpoint["meta"]["downloaded_from"]}, cached in {path}',
                  logger='current')
    return path


def fetch_pretrained(text: str) -> str:
    """Download, convert and cache ``text`` (a ``mobilenet_tasks://`` address) unless
    it is cached; the converted file's path. In a distributed run rank 0 does the work
    and the other ranks wait for it.

    Raises:
        PretrainedError: A bad address, or weights that do not convert.
    """
    address = parse_address(text)
    rank, world_size = get_dist_info()
    if world_size > 1:
        if rank == 0:
            path = _fetch(address)
        barrier()
        if rank > 0:  # rank 0's file, or (no shared disk) a download of its own
            path = _fetch(address)
        return path
    return _fetch(address)


def addresses_in(cfg) -> List[str]:
    """The ``mobilenet_tasks://`` addresses a config will load: ``load_from`` and the
    ``checkpoint`` of every ``init_cfg`` in ``cfg.model``."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            checkpoint = node.get('checkpoint')
            if isinstance(checkpoint, str) and checkpoint.startswith(SCHEME):
                found.append(checkpoint)
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(cfg.get('model'))
    load_from = cfg.get('load_from')
    if isinstance(load_from, str) and load_from.startswith(SCHEME):
        found.append(load_from)
    return list(dict.fromkeys(found))


def fetch_config_weights(cfg) -> List[str]:
    """Download, convert and cache every address of :func:`addresses_in` before a run
    starts, so a bad address or a failed download stops it at once with its message
    instead of inside the Runner; the cached files' paths."""
    return [fetch_pretrained(address) for address in addresses_in(cfg)]


@CheckpointLoader.register_scheme(prefixes=re.escape(SCHEME))
def load_from_mobilenet_tasks(filename: str, map_location=None) -> dict:
    """mmengine's loader of ``mobilenet_tasks://`` checkpoints (:func:`fetch_pretrained`,
    then the cached file, ``weights_only``)."""
    return torch.load(fetch_pretrained(filename), map_location=map_location,
                      weights_only=True)


__all__ = ['SCHEME', 'CACHE_ENV', 'PretrainedError', 'PretrainedAddress',
           'parse_address', 'cache_dir', 'fetch_pretrained', 'load_from_mobilenet_tasks',
           'addresses_in', 'fetch_config_weights',
           'TORCHVISION_MODELS', 'TIMM_PREFIXES']
