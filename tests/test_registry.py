"""Our registry scope, setting the default scope, and the dependency check."""
import importlib
import os
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

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


# -- every registered name builds from a fresh interpreter ------------------------------
# registry -> name -> the keyword arguments (python source, evaluated in the fresh
# process; ``demo_det`` / ``demo_seg`` / ``raspp`` are the configs' model dicts) and
# what building gives: the built object's class, or (exception type, text) of the error
# our own code raises; and the default scope its config gives (our configs inherit
# mmdet's or mmseg's, whose short names their sub-dicts use), as mmdet's and mmseg's
# tools set it.
DEMO_DET, DEMO_SEG = 'configs/ssdlite_v3_large_demo.py', 'configs/lraspp_v3_large_demo.py'
BUILDS = {
    'MODELS': {
        'MobileNetV1': ('{}', 'MobileNetV1'),
        'MobileNetV2': ('{}', 'MobileNetV2'),
        'MobileNetV3': ("dict(arch='small')", 'MobileNetV3'),
        'MnasNet': ('{}', 'MnasNet'),
        'SSDLite': ('without_type(demo_det)', 'SSDLite', 'mmdet'),
        'SSDLiteHead': ('without_type(demo_det.bbox_head)', 'SSDLiteHead', 'mmdet'),
        'EncoderDecoder': ('without_type(demo_seg)', 'EncoderDecoder', 'mmseg'),
        'LRASPPHead': ('dict(without_type(demo_seg.decode_head), in_channels=(40, 960))',
                       'LRASPPHead', 'mmseg'),
        'RASPPHead': ('dict(without_type(raspp.decode_head), in_channels=320)',
                      'RASPPHead', 'mmseg'),
        # built up to our own check of the file
        'BackendModel': ("dict(file='none.onnx', model=demo_seg)",
                         ('FileNotFoundError', 'none.onnx does not exist')),
        'ONNXRuntimeModel': ("dict(onnx_file='none.onnx', model=demo_seg)",
                             ('FileNotFoundError', 'none.onnx does not exist')),
        'QATModel': ("dict(model=demo_seg, float_checkpoint='none.pth')",
                     ('FileNotFoundError', 'float_checkpoint none.pth: no such file')),
    },
    'TASK_UTILS': {
        'SSDLiteAnchorGenerator': ('without_type(demo_det.bbox_head.anchor_generator)',
                                   'SSDLiteAnchorGenerator'),
    },
    'DATASETS': {'CheckedDataset': ('dict(dataset=[1, 2, 3])', 'CheckedDataset')},
    'METRICS': {'CityscapesMetric': ('dict(output_dir=tmp)', 'CityscapesMetric')},
    'HOOKS': {
        'AtomicCheckpointHook': ('{}', 'AtomicCheckpointHook'),
        'RNGStateHook': ('{}', 'RNGStateHook'),
        'DataCheckHook': ('{}', 'DataCheckHook'),
    },
    'MODEL_WRAPPERS': {
        'CPUDistributedDataParallel': (
            'dict(module=torch.nn.Linear(2, 2), device_ids=None)',
            'CPUDistributedDataParallel'),
    },
}

_FRESH = '''
import sys, tempfile, torch
import mmengine.registry as root
from mmengine.config import Config
assert 'mobilenet_tasks' not in sys.modules
tmp = tempfile.mkdtemp()
def without_type(d):
    d = dict(d); d.pop('type'); return d
demo_det = Config.fromfile({det!r}).model
demo_seg = Config.fromfile({seg!r}).model
raspp = Config.fromfile('configs/raspp_v2_cityscapes.py').model
if {registry!r} == 'MODEL_WRAPPERS':
    torch.distributed.init_process_group(
        'gloo', init_method='file://' + tmp + '/pg', rank=0, world_size=1)
for name, (kwargs, scope) in {builds!r}.items():
    try:
        with root.DefaultScope.overwrite_default_scope(scope):
            built = getattr(root, {registry!r}).build(
                dict(type='mobilenet_tasks.' + name, **eval(kwargs)))
        print('BUILT', name, type(built).__name__)
    except Exception as e:
        print('RAISED', name, type(e).__name__, str(e).replace(chr(10), ' '))
'''


def _registered():
    from mobilenet_tasks.registry import ALL
    from mobilenet_tasks.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return {key: sorted(registry.module_dict) for key, registry in ALL.items()}


def test_every_registered_name_has_a_build_check():
    # a class registered without an entry in BUILDS fails here
    assert _registered() == {key: sorted(names) for key, names in BUILDS.items()}


@pytest.mark.parametrize('registry', sorted(BUILDS))
def test_every_registered_name_builds_in_a_fresh_interpreter(registry):
    """Through mmengine's root registry as ``mobilenet_tasks.<Name>``, with nothing of
    ours imported first: what a config dumped by a run, built by mmdet's or mmseg's own
    tools, needs."""
    root = Path(__file__).resolve().parents[1]
    builds = {name: (spec[0], spec[2] if len(spec) > 2 else None)
              for name, spec in BUILDS[registry].items()}
    code = _FRESH.format(det=DEMO_DET, seg=DEMO_SEG, registry=registry, builds=builds)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split()[1]: line for line in proc.stdout.splitlines()
             if line.startswith(('BUILT', 'RAISED'))}
    for name, spec in BUILDS[registry].items():
        expected = spec[1]
        line = lines.get(name, f'nothing printed for {name}: {proc.stderr[-2000:]}')
        if isinstance(expected, str):
            assert line.split()[:3] == ['BUILT', name, expected], line
        else:
            kind, text = expected
            assert line.split()[:3] == ['RAISED', name, kind] and text in line, line
