"""Building a model from any config: ours, or an mmdet/mmseg/mmpretrain one."""
import logging

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope


def load_config(config, cfg_options=None) -> Config:
    """Load a config path (or pass a Config through) and merge ``cfg_options``."""
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_model(config, cfg_options=None, init_weights: bool = True):
    """Build ``cfg.model`` in the config's ``default_scope`` (mobilenet_tasks if unset).

    Args:
        config (str or Config): A config file or a loaded config.
        cfg_options (dict, optional): Overrides, as ``--cfg-options`` gives them.
        init_weights (bool): Run ``init_weights`` (its ``init_cfg``s). False when a
            checkpoint will overwrite every weight anyway.

    Returns:
        nn.Module: The model (weights initialised by ``init_weights`` if asked).
    """
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mobilenet_tasks'))
    model = MODELS.build(cfg.model)
    if not init_weights:
        return model
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter at INFO
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model
