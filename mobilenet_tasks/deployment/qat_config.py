"""A float config turned into its QAT fine-tune (``tools/train.py CONFIG --qat
--load-from FLOAT.pth``).

What changes, and only that (the data, the pipelines, the evaluator, the hooks, the
optimizer type are the float config's):

- ``model``: a :class:`~.qat_model.QATModel` around the float ``model``, with the float
  checkpoint loaded before the graph is made (``load_from`` is cleared: the Runner
  would load float weights into a graph with other keys);
- the schedule: ``iters`` iterations (default 10% of the float schedule's,
  :data:`DEFAULT_FRACTION`), the optimizer's learning rate ``lr_factor`` times the
  float one (default :data:`DEFAULT_LR_FACTOR`), cosine-decayed to 1% of it over the
  run with no warm-up (the weights are trained), validation at the end, checkpoints
  at the float config's interval or at the end if that comes first;
- the recipe: batch norm statistics frozen after ``bn_freeze`` of the iterations,
  observers after ``observer_freeze`` (fractions, -1: never), ``keep_float`` parts.

The settings come from, in order: the arguments, the config's own ``qat = dict(...)``
(so a config can carry its QAT recipe), the defaults here. They are written back into
``cfg.qat`` as used, so the dumped config records them.
"""
import copy
import math
from typing import Optional

from mmengine.config import Config

#: QAT iterations as a fraction of the float schedule's (the issue's bound: 10%).
DEFAULT_FRACTION = 0.1
#: The fine-tune's learning rate as a fraction of the float config's (measured on the
#: demo models, README "Quantization-aware training": 0.02 kept the segmentor's float
#: mIoU, 0.05 and 0.1 lost 0.2-0.5; the detector gained the same at 0.02 and 0.05).
DEFAULT_LR_FACTOR = 0.02
#: Fractions of the QAT iterations after which BN statistics / observers freeze.
DEFAULT_BN_FREEZE = 0.5
DEFAULT_OBSERVER_FREEZE = 0.75

SETTINGS = ('iters', 'lr_factor', 'bn_freeze', 'observer_freeze', 'keep_float')


def _float_iters(cfg: Config) -> int:
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_iters' in train_cfg:
        return int(train_cfg['max_iters'])
    raise ValueError('QAT needs an iteration-based float schedule (train_cfg.max_iters)'
                     ' to size its fine-tune: pass the QAT iterations (--qat-iters N)')


def _freeze_at(fraction, iters: int, name: str) -> int:
    fraction = float(fraction)
    if fraction < 0:
        return -1
    if fraction > 1:
        raise ValueError(f'qat.{name} is a fraction of the QAT iterations in [0, 1] '
                         f'(or -1: never), got {fraction}')
    return int(math.floor(fraction * iters))


def qat_config(cfg: Config, float_checkpoint: Optional[str], resuming: bool = False,
               **settings) -> Config:
    """The QAT fine-tune of float config ``cfg`` (a new Config; ``cfg`` unchanged).

    Args:
        cfg (Config): A float detection or segmentation config.
        float_checkpoint (str, optional): The trained float weights (None: the config's
            ``load_from``).
        resuming (bool): The run resumes from a QAT checkpoint, which holds every
            weight: no float checkpoint needed.
        **settings: ``iters``, ``lr_factor``, ``bn_freeze``, ``observer_freeze``,
            ``keep_float`` (see the module docstring); None values are ignored.

    Raises:
        ValueError: No float checkpoint, an unknown setting or a bad value, or a
            config that is already a QAT one.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f'unknown QAT settings {unknown}; known: {list(SETTINGS)}')
    cfg = copy.deepcopy(cfg)
    if str(cfg.model.get('type', '')).split('.')[-1] == 'QATModel':
        raise ValueError('the config is already a QAT config (model.type QATModel): '
                         'run it without --qat')
    float_checkpoint = float_checkpoint or cfg.get('load_from') or None
    if not float_checkpoint and not resuming:
        raise ValueError('QAT fine-tunes a trained float model: pass its checkpoint '
                         '(--load-from FLOAT.pth)')
    own = dict(cfg.get('qat') or {})
    chosen = {k: v for k, v in settings.items() if v is not None}
    merged = {**own, **chosen}
    iters = merged.get('iters')
    if iters is None:
        iters = max(1, int(round(DEFAULT_FRACTION * _float_iters(cfg))))
    iters = int(iters)
    if iters < 1:
        raise ValueError(f'qat.iters must be positive, got {iters}')
    lr_factor = float(merged.get('lr_factor', DEFAULT_LR_FACTOR))
    if not lr_factor > 0:
        raise ValueError(f'qat.lr_factor must be positive, got {lr_factor}')
    keep_float = tuple(merged.get('keep_float') or ())
    bn_freeze = merged.get('bn_freeze', DEFAULT_BN_FREEZE)
    observer_freeze = merged.get('observer_freeze', DEFAULT_OBSERVER_FREEZE)
    cfg.model = dict(
        type='mobilenet_tasks.QATModel', model=cfg.model,
        float_checkpoint=float_checkpoint,
        bn_freeze_iter=_freeze_at(bn_freeze, iters, 'bn_freeze'),
        observer_freeze_iter=_freeze_at(observer_freeze, iters, 'observer_freeze'),
        keep_float=list(keep_float))
    cfg.load_from = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters,
                         val_interval=iters)
    optimizer = cfg.optim_wrapper.get('optimizer')
    if optimizer is None or 'lr' not in optimizer:
        raise ValueError('the config\'s optim_wrapper.optimizer has no lr to scale')
    lr = float(optimizer['lr']) * lr_factor
    cfg.optim_wrapper.optimizer.lr = lr
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', begin=0, T_max=iters,
                                end=iters, by_epoch=False, eta_min=lr * 0.01)]
    hooks = cfg.get('default_hooks') or {}
    if 'checkpoint' in hooks:  # at least one, at the end
        hooks.checkpoint.interval = min(int(hooks.checkpoint.get('interval', iters)),
                                        iters)
        hooks.checkpoint.by_epoch = False
    if 'logger' in hooks:
        hooks.logger.interval = max(1, min(int(hooks.logger.get('interval', 50)),
                                           iters // 4 or 1))
    if cfg.get('auto_scale_lr'):
        cfg.auto_scale_lr.enable = False  # the float run's lr was already scaled
    cfg.qat = dict(iters=iters, lr_factor=lr_factor, bn_freeze=bn_freeze,
                   observer_freeze=observer_freeze, keep_float=list(keep_float),
                   float_checkpoint=float_checkpoint)
    return cfg


def is_qat_config(cfg) -> bool:
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    return (isinstance(model, dict)
            and str(model.get('type', '')).split('.')[-1] == 'QATModel')


def is_qat_checkpoint(state_dict: dict) -> bool:
    """Whether a state dict is a :class:`~.qat_model.QATModel`'s."""
    from mobilenet_tasks.utils.weights import QAT_ITER_KEY
    return QAT_ITER_KEY in state_dict


def config_for_checkpoint(cfg: Config, state_dict: dict, meta: dict) -> Config:
    """The config that builds the model ``state_dict`` loads into: ``cfg`` itself for
    a float checkpoint; for a QAT checkpoint, the QAT model (of ``cfg`` if it is a QAT
    config, else of float config ``cfg`` with the QAT settings the run recorded in its
    checkpoint's ``meta['cfg']``), without loading the float weights (the checkpoint
    has them all). A new Config; ``cfg`` is unchanged.

    Raises:
        ValueError: A float checkpoint with a QAT config.
    """
    if not is_qat_checkpoint(state_dict):
        if is_qat_config(cfg):
            raise ValueError('a float checkpoint with a QAT config: pass the float '
                             'config it was trained with (the QAT config\'s '
                             'model.model)')
        return cfg
    if is_qat_config(cfg):
        cfg = copy.deepcopy(cfg)
    else:
        recorded = {}
        text = meta.get('cfg') if isinstance(meta, dict) else None
        if isinstance(text, str):
            try:
                recorded = dict(Config.fromstring(text, '.py').get('qat') or {})
            except Exception:  # noqa: BLE001 (a config this version cannot read)
                recorded = {}
        cfg = qat_config(cfg, 'from the checkpoint', iters=recorded.get('iters'),
                         keep_float=recorded.get('keep_float'))
    cfg.model.float_checkpoint = None
    return cfg


__all__ = ['qat_config', 'is_qat_config', 'is_qat_checkpoint', 'config_for_checkpoint',
           'DEFAULT_FRACTION', 'DEFAULT_LR_FACTOR',
           'DEFAULT_BN_FREEZE', 'DEFAULT_OBSERVER_FREEZE']
