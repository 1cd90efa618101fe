"""The data checks' registered types resolve from a fresh interpreter through the
registry locations alone: ``mobilenet_tasks.CheckedDataset`` (DATASETS, location
``mobilenet_tasks.datasets``) and ``mobilenet_tasks.DataCheckHook`` (HOOKS, location
``mobilenet_tasks.datasets.checks``), both from our registries and from mmengine's root
ones through the scope, as the configs rewritten by ``check_data_files`` name them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenet_tasks.datasets import make_demo_coco

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ('circle', 'square', 'triangle', 'star')

# Our registries: nothing of the data checks is imported before the builds.
OURS = r'''
import json, sys
from mobilenet_tasks.registry import DATASETS, HOOKS

def loaded():
    return sorted(m for m in sys.modules if m.startswith('mobilenet_tasks.datasets'))

report = dict(before=loaded())
dataset = DATASETS.build(dict(
    type='mobilenet_tasks.CheckedDataset', policy='skip', max_skips=3,
    dataset=dict(type='mmdet.CocoDataset', data_root=sys.argv[1],
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES),
                 pipeline=[])))
hook = HOOKS.build(dict(type='mobilenet_tasks.DataCheckHook', lines=['a line'],
                        skipped=2))
bare = HOOKS.build(dict(type='DataCheckHook'))
sample = dataset[0]
report.update(
    dataset=f'{type(dataset).__module__}.{type(dataset).__name__}',
    inner=type(dataset.dataset).__name__, length=len(dataset),
    classes=list(dataset.metainfo['classes']), policy=dataset.policy,
    max_skips=dataset.max_skips, skipped=dataset.skipped,
    sample_img=sample['img_path'],
    hook=f'{type(hook).__module__}.{type(hook).__name__}', lines=hook.lines,
    hook_skipped=hook.skipped, bare_is_same=type(bare) is type(hook),
    after=loaded())
print('REPORT ' + json.dumps(report))
'''.replace('CLASSES', repr(CLASSES))

# mmengine's root registries only: the scope imports mobilenet_tasks.registry, and its
# locations the modules that register the names.
ROOT_REGISTRIES = r'''
import json, sys
from mmengine.registry import DATASETS, HOOKS

report = dict(before='mobilenet_tasks' in sys.modules)
dataset_cls = DATASETS.get('mobilenet_tasks.CheckedDataset')
hook_cls = HOOKS.get('mobilenet_tasks.DataCheckHook')
name = lambda cls: cls and f'{cls.__module__}.{cls.__name__}'
report.update(dataset=name(dataset_cls), hook=name(hook_cls))
from mobilenet_tasks.datasets.checks import CheckedDataset, DataCheckHook
report.update(same=dataset_cls is CheckedDataset and hook_cls is DataCheckHook)
print('REPORT ' + json.dumps(report))
'''

WRAPPER = 'mobilenet_tasks.datasets.checks.wrapper.CheckedDataset'
HOOK = 'mobilenet_tasks.datasets.checks.hook.DataCheckHook'


def _report(proc) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    lines = [line for line in out.splitlines() if line.startswith('REPORT ')]
    assert len(lines) == 1, out[-3000:] + err[-3000:]
    return json.loads(lines[0][len('REPORT '):])


@pytest.fixture(scope='module')
def reports(tmp_path_factory):
    data = tmp_path_factory.mktemp('coco')
    make_demo_coco(data, num_train=3, num_val=1, image_size=64, seed=0)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    # both fresh interpreters at once
    procs = dict(
        ours=subprocess.Popen([sys.executable, '-c', OURS, f'{data}/'], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True),
        root=subprocess.Popen([sys.executable, '-c', ROOT_REGISTRIES], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True))
    return {key: _report(proc) for key, proc in procs.items()}, data


def test_our_registries_build_the_wrapper_and_the_hook_from_a_fresh_process(reports):
    report, data = reports[0]['ours'], reports[1]
    # the registry locations, not an import of ours, brought the data checks in
    assert 'mobilenet_tasks.datasets.checks' not in report['before']
    assert 'mobilenet_tasks.datasets.checks' in report['after']
    assert report['dataset'] == WRAPPER
    assert report['inner'] == 'CocoDataset' and report['length'] == 3
    assert report['classes'] == list(CLASSES)
    assert (report['policy'], report['max_skips'], report['skipped']) == ('skip', 3, 0)
    assert report['sample_img'].startswith(f'{data}/train/')
    assert report['hook'] == HOOK
    assert report['lines'] == ['a line'] and report['hook_skipped'] == 2
    assert report['bare_is_same']


def test_mmengine_root_registries_find_them_through_the_scope(reports):
    report = reports[0]['root']
    assert report['before'] is False
    assert report['dataset'] == WRAPPER
    assert report['hook'] == HOOK
    assert report['same'] is True
