"""Configs: resolving a name to a config file, loading it, building its model (ours, or
an mmdet/mmseg/mmpretrain one)."""
import difflib
import logging
import os
from pathlib import Path
from typing import Union

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope

from .model_index import ROOT, load_model_index


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


def resolve_config(model) -> Union[str, Config]:
    """A config path for ``model``: a config file, or a ``model-index.yml`` Name.

    Raises:
        ValueError: Neither; the message lists the closest names.
    """
    if isinstance(model, Config):
        return model
    text = os.fspath(model)
    if os.path.isfile(text):
        return text
    try:
        names = {entry['Name']: entry['Config'] for entry in load_model_index()}
    except FileNotFoundError:
        names = {}
    if text in names:
        return names[text]
    looks_like_path = text.endswith('.py') or os.sep in text
    what = f'no config file {text}' if looks_like_path else (
        f'{text!r} is neither a config file nor a model name of model-index.yml')
    close = difflib.get_close_matches(Path(text).stem if looks_like_path else text,
                                      names, n=5, cutoff=0.6)
    if close:
        hint = f'close names: {", ".join(close)}'
    elif names:
        hint = (f'model-index.yml lists {len(names)} names, such as '
                f'{", ".join(sorted(names)[:4])}')
    else:
        hint = f'no model-index.yml at {ROOT}: pass a config file'
    raise ValueError(f'{what}; {hint}')
