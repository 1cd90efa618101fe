"""Registering our modules and choosing the default scope."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every module that registers into the mobilenet_tasks registries (the
    registries' own ``locations``, :mod:`mobilenet_tasks.registry`).

    Args:
        init_default_scope (bool): Whether to make ``mobilenet_tasks`` the default scope.
            If another scope is current, a new instance named with a timestamp is made
            current, as mmdet's own ``register_all_modules`` does.
    """
    from mobilenet_tasks.registry import ALL
    for registry in ALL.values():
        registry.import_from_location()

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or not DefaultScope.check_instance_created('mobilenet_tasks'):
        DefaultScope.get_instance('mobilenet_tasks', scope_name='mobilenet_tasks')
        return
    if current.scope_name != 'mobilenet_tasks':
        warnings.warn('The current default scope '
                      f'"{current.scope_name}" is not "mobilenet_tasks"; '
                      '`register_all_modules` makes a new default scope instance.')
        name = f'mobilenet_tasks-{datetime.datetime.now()}'
        DefaultScope.get_instance(name, scope_name='mobilenet_tasks')
