"""``--cfg-options`` that do what they say, or say why not, before anything runs.

mmengine's ``Config.merge_from_dict`` takes any key: a misspelled top-level key
(``trian_cfg.max_iters=2``) is added unused and the run trains the full schedule; a
misspelled argument (``model.backbone.widen_factr=0.5``) fails deep in the model's
constructor with a long ``TypeError``; and mmengine's ``DictAction`` recurses without
end on a ``dict(...)`` value (``RecursionError``). Here:

- :class:`~mobilenet_tasks.utils.arguments.DictAction` reads ``dict(...)`` values (literals, nested ``dict(...)``,
  lists, tuples, bare words as strings, like the rest of mmengine's syntax) and leaves
  every other value to mmengine's rules;
- :func:`check_cfg_options` refuses a key the config does not have and the Runner does
  not take, and an argument the class named by the dict's ``type`` does not take, each
  with the close matches.
"""
import difflib
import inspect
from typing import Iterable, List, Optional

# Top-level keys that configs may leave out and the run still reads (``qat``:
# tools/train.py --qat's settings, mobilenet_tasks.deployment.qat_config).
EXTRA_TOP_LEVEL = ('data_check', 'qat')


class CfgOptionsError(ValueError):
    """A ``--cfg-options`` key that would be ignored or fail: the message says which
    and what the config has instead."""


def _close(word: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(map(str, names))), n=3,
                                      cutoff=0.75)
    return f'; did you mean {" or ".join(close)}?' if close else ''


def _runner_keys() -> List[str]:
    from mmengine.runner import Runner
    return [p for p in inspect.signature(Runner.__init__).parameters if p != 'self']


def _class_of(kind, scope: Optional[str]):
    """The class (or function) a ``type`` names, in whichever root registry has it."""
    if not isinstance(kind, str):
        return kind
    import mmengine.registry as registries
    names = ('MODELS', 'DATASETS', 'TRANSFORMS', 'HOOKS', 'LOOPS', 'METRICS',
             'EVALUATOR', 'OPTIM_WRAPPERS', 'OPTIMIZERS', 'PARAM_SCHEDULERS',
             'TASK_UTILS', 'VISUALIZERS', 'VISBACKENDS', 'DATA_SAMPLERS',
             'MODEL_WRAPPERS', 'LOG_PROCESSORS', 'WEIGHT_INITIALIZERS')
    for name in names:
        registry = getattr(registries, name, None)
        if registry is None:
            continue
        try:
            with registry.switch_scope_and_registry(scope) as scoped:
                found = scoped.get(kind)
        except Exception:  # noqa: BLE001 (an unimportable scope)
            found = None
        if found is not None:
            return found
    return None


def _own_parameters(function):
    """``(named keyword parameters, takes **kwargs)`` of a function, None if it cannot
    be inspected."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    names = [p.name for p in params if p.name != 'self'
             and p.kind not in (inspect.Parameter.VAR_POSITIONAL,
                                inspect.Parameter.VAR_KEYWORD)]
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _passes_kwargs_up(function) -> bool:
    """Whether a ``**kwargs`` constructor hands them to its base class's (the common
    ``super().__init__(..., **kwargs)``), read from its source."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return '**kwargs' in source.split('__init__(', 2)[-1] and (
        'super().__init__(' in source or '.__init__(self' in source)


def _parameters(obj) -> Optional[List[str]]:
    """The keyword arguments ``obj`` takes, None where that cannot be known (it takes
    ``**kwargs`` that do not only go to its base classes, or no signature).

    A class whose ``__init__`` passes ``**kwargs`` up (``super().__init__(**kwargs)``,
    as our backbones do) takes its own arguments and its bases' ones, down to the first
    base that takes no ``**kwargs``."""
    if not inspect.isclass(obj):
        own = _own_parameters(obj)
        return None if own is None or own[1] else own[0]
    names: List[str] = []
    for cls in obj.__mro__:
        init = cls.__dict__.get('__init__')
        if init is None:
            continue
        own = _own_parameters(init)
        if own is None:
            return None
        names += [n for n in own[0] if n not in names]
        if not own[1]:
            return names
        if not _passes_kwargs_up(init):
            return None
    return None


def check_cfg_options(cfg, options: dict) -> None:
    """Raise :class:`CfgOptionsError` for a key of ``options`` that would be ignored or
    fail.

    A key's first part must be in the config or be an argument of mmengine's Runner;
    a part missing from a dict with a ``type`` must be an argument of that class (when
    its signature says which it takes); a part can only index into a dict or a list.
    Free dicts (without ``type``: ``test_cfg`` of a head, ``env_cfg``...) take any key.
    """
    scope = cfg.get('default_scope')
    runner_keys = None
    for key in options:
        parts = key.split('.')
        node = cfg
        for i, part in enumerate(parts):
            where = '.'.join(parts[:i])
            if isinstance(node, dict) or hasattr(node, '_cfg_dict'):  # or a Config
                if part in node:
                    node = node[part]
                    continue
                if i == 0:
                    runner_keys = runner_keys or _runner_keys()
                    if part in runner_keys or part in EXTRA_TOP_LEVEL:
                        break
                    raise CfgOptionsError(
                        f'--cfg-options {key}: the config has no {part!r} and the '
                        f'Runner takes no such argument, so it would be ignored'
                        f'{_close(part, list(node) + runner_keys)}')
                if 'type' in node:
                    cls = _class_of(node['type'], scope)
                    params = None if cls is None else _parameters(cls)
                    if params is not None and part not in params:
                        name = getattr(cls, '__name__', str(node['type']))
                        raise CfgOptionsError(
                            f'--cfg-options {key}: {where} is a {name}, which takes no '
                            f'argument {part!r}{_close(part, params)} (it takes '
                            f'{", ".join(params)})')
                break  # a new key of a free dict, or an argument the class takes
            if isinstance(node, (list, tuple)):
                if part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                    continue
                raise CfgOptionsError(
                    f'--cfg-options {key}: {where} is a list of {len(node)}; index it '
                    f'with 0 to {len(node) - 1} ({where}.0.<key>=...)')
            raise CfgOptionsError(
                f'--cfg-options {key}: {where} is {node!r}, not a dict; set {where}=... '
                'itself')
