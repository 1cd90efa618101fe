"""Our registry scope, setting the default scope, and the dependency check."""
import importlib
import warnings
from importlib import metadata

import pytest
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import DefaultScope, init_default_scope

import mobilenet_tasks
from mobilenet_tasks.models.backbones import (MnasNet, MobileNetV1, MobileNetV2,
                                              MobileNetV3)
from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.utils.version_check import SUPPORTED, check_dependencies


def test_models_registry_is_a_child_of_mmengines_root():
    assert MODELS.scope == 'mobilenet_tasks'
    assert MODELS.parent is MMENGINE_MODELS
    assert MMENGINE_MODELS.children['mobilenet_tasks'] is MODELS
    assert mobilenet_tasks.MODELS is MODELS
    for cls in (MobileNetV3, MobileNetV2, MnasNet, MobileNetV1):
        assert MODELS.get(cls.__name__) is cls
        assert MMENGINE_MODELS.get(f'mobilenet_tasks.{cls.__name__}') is cls


@pytest.mark.parametrize('where', ['mobilenet_tasks', 'mobilenet_tasks.utils'])
def test_register_all_modules_sets_the_default_scope(where):
    # OpenMMLab packages offer it as ``<package>.utils.register_all_modules``.
    register_all_modules = getattr(importlib.import_module(where), 'register_all_modules',
                                   None)
    assert callable(register_all_modules), f'{where}.register_all_modules is missing'
    init_default_scope('mmdet')
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    register_all_modules(init_default_scope=False)
    assert DefaultScope.get_current_instance().scope_name == 'mmdet'
    with warnings.catch_warnings():
        # Warns (a new scope instance is made) if a mobilenet_tasks one already exists.
        warnings.simplefilter('ignore')
        register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'mobilenet_tasks'
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # already current: no new instance, no warning
        register_all_modules()
    assert DefaultScope.get_current_instance().scope_name == 'mobilenet_tasks'
    built = MMENGINE_MODELS.build(dict(type='MobileNetV3', arch='small'))
    assert type(built) is MobileNetV3


INSTALLED_OK = {'mmcv': '2.1.0', 'mmengine': '0.10.7', 'mmdet': '3.3.0',
                'mmsegmentation': '1.2.2'}


def test_check_dependencies_names_every_bad_version():
    bad = dict(INSTALLED_OK, mmcv='2.2.0', mmdet='3.2.0')
    with pytest.raises(ImportError) as info:
        check_dependencies(installed=bad)
    message = str(info.value)
    assert 'mmcv 2.2.0 is installed (need >=2.0.0,<2.2.0)' in message
    assert 'mmdet 3.2.0 is installed (need >=3.3.0,<3.4.0)' in message
    assert 'mmengine' not in message and 'mmsegmentation' not in message
    assert message.count('is installed (need') == 2


def test_check_dependencies_names_a_missing_package():
    missing = {k: v for k, v in INSTALLED_OK.items() if k != 'mmsegmentation'}
    with pytest.raises(ImportError, match=r'mmsegmentation is not installed '
                                          r'\(need >=1\.2\.2,<1\.3\.0\)'):
        check_dependencies(installed=missing)


def test_check_dependencies_accepts_the_installed_stack():
    check_dependencies(installed=INSTALLED_OK)
    check_dependencies()  # what is really installed in .venv
    installed = {name: metadata.version(name) for name in SUPPORTED}
    check_dependencies(installed=installed)
    # The edges of the ranges: lowest supported is in, first unsupported is out.
    lowest = {name: low for name, (low, _) in SUPPORTED.items()}
    check_dependencies(installed=lowest)
    for name, (_, high) in SUPPORTED.items():
        with pytest.raises(ImportError, match=f'{name} {high} is installed'):
            check_dependencies(installed=dict(lowest, **{name: high}))
