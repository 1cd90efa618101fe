"""tools/analysis_tools/benchmark.py: params, MAdds, latency and peak memory on eight
backends (PyTorch, onnxruntime, ExecuTorch, OpenVINO; fp32 and int8) for our configs and
the stock peers, the paper's ratios within one run, the Figure 1 plot.

The benchmark itself runs once, in quick mode (small inputs, one round, every runtime
for the V3† SSDLite, memory at one thread): its figures mean nothing, the test checks
the structure of the report and that every number is sane and where it should be. It
is the slow test of this file (minutes: lowering SSDLite to XNNPACK, fp32 and int8,
and a fresh process for each memory figure); the others use hand-made records, and the
memory one a tiny ONNX file."""
import importlib.util
import json
import os
from pathlib import Path

import pytest

from mobilenet_tasks.analysis import benchmark as bm
from mobilenet_tasks.analysis import machine, memory
from mobilenet_tasks.analysis.catalogue import Entry
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]
# file backend -> the Python package its runtime needs
RUNTIME_PACKAGE = {'ort': 'onnxruntime', 'ort-int8': 'onnxruntime',
                   'et': 'executorch', 'et-int8': 'executorch',
                   'ov': 'openvino', 'ov-int8': 'nncf'}


def _installed(backend: str) -> bool:
    package = RUNTIME_PACKAGE.get(backend)
    return package is None or (importlib.util.find_spec(package) is not None and (
        backend != 'ov-int8' or importlib.util.find_spec('openvino') is not None))


def _load_tool():
    return load_tool('tools/analysis_tools/benchmark.py')


def test_quick(tmp_path, capsys):
    """One quick run (one test, so that pytest-xdist workers do not each run it)."""
    tool = _load_tool()
    # one thread: the all-cores round is the same code, and slow on a shared machine
    rc = tool.main(['--quick', '--threads', '1', '--work-dir', str(tmp_path), '--out',
                    str(tmp_path / 'report.json'), '--plot', str(tmp_path / 'fig1.png')])
    assert rc == 0
    out = capsys.readouterr().out
    assert "SSDLite V3† / mmdet's SSDLite V2" in out
    assert 'Fastest runtime on this machine' in out and 'peak memory MiB' in out
    report = json.loads((tmp_path / 'report.json').read_text())
    _check_structure(report)
    _check_runtimes(report)
    _check_memory(report)
    _check_ratios(report)
    _check_counts(report)
    _check_outputs(tmp_path, report)


def _check_structure(report):
    settings = report['settings']
    assert settings['quick'] and settings['repeats'] == 1
    threads = [str(n) for n in settings['threads']]
    assert threads == ['1']
    models = {m['name']: m for m in report['models']}
    assert set(models) == {bm.V3_REDUCED, bm.LRASPP_V3, bm.RASPP_V2, *bm.PEERS}
    for m in models.values():
        size = settings['det_size' if m['task'] == 'detection' else 'seg_size']
        assert m['input_size'] == size
        assert m['params'] > 0 and m['madds'] > 0
        assert m['accuracy'] and 10 < m['accuracy']['value'] < 90, m['name']
        # eager for everyone, at every thread count, each round positive
        assert set(m['latency_ms']['eager']) == set(threads)
        for backend, per_thread in m['latency_ms'].items():
            for n, median in per_thread.items():
                assert median > 0 and all(t > 0 for t in m['runs_ms'][backend][n])
        # the fastest runtime is the least median
        for n in threads:
            best = min(m['latency_ms'], key=lambda b: m['latency_ms'][b][n])
            assert m['fastest'][n] == dict(backend=best,
                                           ms=m['latency_ms'][best][n])
    assert {'ort', 'ort-int8'} <= set(models[bm.LRASPP_V3]['latency_ms'])
    assert models[bm.V3_REDUCED]['bn_left'] == {}
    assert models[bm.V3_REDUCED]['bn_folded'] > 0
    fid = models[bm.LRASPP_V3]['int8_fidelity']['ort-int8']
    assert 0 <= fid['argmax_agreement'] <= 1 and fid['cosine'] > 0.5
    # accuracies: ours the paper's, peers their published ones
    assert models[bm.V3_REDUCED]['accuracy']['value'] == 22.0
    assert models[bm.LRASPP_V3]['accuracy']['value'] == 72.36
    assert models[bm.MMDET_SSDLITE]['accuracy']['value'] == 21.3
    assert models[bm.MMSEG_LRASPP]['accuracy']['value'] == 69.54
    assert models[bm.TV_SSDLITE]['accuracy']['value'] == 21.3
    found = report['machine']
    assert set(found['cpu_flags']) == set(machine.CPU_FLAGS)
    assert {'onnxruntime', 'executorch', 'openvino', 'nncf'} <= set(found['versions'])


def _check_runtimes(report):
    """Every runtime ran the V3† SSDLite (or, not installed, is skipped with why)."""
    v3 = {m['name']: m for m in report['models']}[bm.V3_REDUCED]
    assert set(v3['latency_ms']) | set(v3['skipped']) == set(bm.BACKENDS)
    for backend in bm.FILE_BACKENDS:
        if not _installed(backend):
            assert 'not installed' in v3['skipped'][backend]
            continue
        assert backend in v3['latency_ms'], v3['skipped'].get(backend)
        assert os.path.isfile(v3['exports'][backend]['path'])
        assert v3['file_mb'][backend] == memory.file_mb(v3['exports'][backend]['path'])
    if _installed('ov'):  # OpenVINO fp32 runs the very ONNX file of onnxruntime
        assert v3['exports']['ov']['path'] == v3['exports']['ort']['path']
    if _installed('et'):
        assert v3['exports']['et']['not_delegated'] == {}
    for backend, fp32 in (('ort-int8', 'ort'), ('et-int8', 'et'), ('ov-int8', 'ov')):
        if backend in v3['latency_ms']:
            assert v3['file_mb'][backend] < v3['file_mb'][fp32]
            assert set(v3['int8_fidelity'][backend]) >= {'max_abs_diff', 'cosine'}


def _check_memory(report):
    """Memory of every runner timed (but BN folded), at the quick run's one thread."""
    assert report['settings']['memory'] and report['settings']['memory_threads'] == [1]
    for m in report['models']:
        assert set(m['memory_mb']) == set(m['latency_ms']) - {'fused'}, m['name']
        for backend, per_thread in m['memory_mb'].items():
            got = per_thread['1']
            assert 50 < got['runtime'] < got['peak'], (m['name'], backend, got)
            assert got['model'] == pytest.approx(got['peak'] - got['runtime'], abs=0.2)


def _check_ratios(report):
    rows = {r['key']: r for r in report['ratios']}
    assert {spec['key'] for spec in bm.RATIOS} <= set(rows)
    models = {m['name']: m for m in report['models']}
    not_quick = {s['key'] for s in bm.RATIOS if s.get('quick') is False}
    for key, row in rows.items():
        (num, nb), (den, db) = row['numerator'], row['denominator']
        if key in not_quick or (key.endswith(':fastest') and
                                nb not in models[den]['latency_ms']):
            # not timed in --quick: LR-ASPP's ET / OV rows; the peers ran eager only
            assert row['missing'] and row['value'] is None, row
            continue
        assert row['missing'] is None, row  # every other row of the quick run
        assert set(row['values']) == {str(n) for n in report['settings']['threads']}
        latency = models[num]['latency_ms'][nb]['1'], models[den]['latency_ms'][db]['1']
        expected = latency[0] / latency[1]
        assert row['value'] == pytest.approx(expected, rel=1e-3)
    for spec in bm.RATIOS:
        if spec.get('same_backend'):
            fastest = rows[spec['key'] + ':fastest']
            assert fastest['numerator'] == [
                spec['num'][0], models[spec['num'][0]]['fastest']['1']['backend']]
    assert rows['ssdlite_v3_reduced_vs_mmdet_v2']['target'] == 0.73
    assert rows['lraspp_v3_vs_raspp_v2']['target'] == 0.63
    for key in ('ssdlite_v3_reduced_vs_mmdet_v2', 'lraspp_v3_vs_raspp_v2'):
        assert isinstance(rows[key]['ok'], bool)
    assert 'the target is at 1024x2048' in rows['lraspp_v3_vs_raspp_v2']['note']
    assert rows['ssdlite_v3_reduced_int8_vs_fp32']['int8_fidelity'] is not None
    for key, backend in (('ssdlite_v3_reduced_et_int8_vs_fp32', 'et-int8'),
                         ('ssdlite_v3_reduced_ov_int8_vs_fp32', 'ov-int8')):
        if _installed(backend):
            assert rows[key]['value'] > 0 and rows[key]['int8_fidelity']


def _check_counts(report):
    """Params and MAdds are count_complexity's, of the module timed, at the size
    timed."""
    from mobilenet_tasks.analysis.complexity import count_complexity
    models = {m['name']: m for m in report['models']}
    for name in (bm.V3_REDUCED, bm.TV_SSDLITE):
        built = bm.build(bm.resolve(name))
        counts = count_complexity(built.timed, tuple(models[name]['input_size']))
        assert models[name]['params'] == counts['params']
        assert models[name]['madds'] == pytest.approx(counts['madds'])
    assert models[bm.TV_SSDLITE]['params'] == 3440060  # torchvision's own figure


def _check_outputs(work, report):
    png = (work / 'fig1.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10000
    text = bm.format_report(report)
    assert '| ratio |' in text and "SSDLite V3† / mmdet's SSDLite V2" in text
    assert 'onnxruntime int8' in text and '(paper)' in text
    for label in ('ExecuTorch XNNPACK int8', 'OpenVINO int8 (NNCF)'):
        assert label in text


def test_compute_ratios_names_what_is_missing():
    models = {bm.V3_REDUCED: dict(latency_ms={'eager': {'1': 10.0}},
                                  skipped={'ort': 'no exporter'})}
    rows = {r['key']: r for r in bm.compute_ratios(models, [1])}
    row = rows['ssdlite_v3_reduced_vs_mmdet_v2']
    assert row['value'] is None and row['ok'] is None
    assert any(bm.MMDET_SSDLITE in m and 'not measured' in m for m in row['missing'])
    assert any('no exporter' in m for m in rows['ssdlite_v3_reduced_ort_vs_eager']
               ['missing'])


@pytest.mark.parametrize('argv, messages', [
    (['no_such_model'], ['no_such_model: neither a config file']),
    (['configs/classification/mobilenet-v2_8xb32_in1k.py'],
     ['neither a detector nor a segmentor']),
    # too small for the 49x49 pools, ours (stride 16) and mmseg's (stride 8)
    (['configs/lraspp_v3_large_cityscapes.py', '--peers', 'mmseg', '--seg-size', '256',
      '512'], ['lraspp_v3_large_cityscapes cannot take a 256x512 input',
               'at least 769x769', '--global-pool', 'at least 385x385']),
    (['ssdlite_v3_large_demo', '--peers', 'none', '--det-size', '16', '16'],
     ['two ints >= 32']),
    (['ssdlite_v3_large_demo', '--peers', 'mmseg_typo'], ['mmseg_typo: neither']),
])
def test_bad_requests(tmp_path, capsys, argv, messages):
    tool = _load_tool()
    assert tool.main(argv + ['--work-dir', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert '\nerror: ' in '\n' + err
    for message in messages:
        assert message in err


def test_busy_machine_warning():
    models = {'a': dict(name='a', latency_ms={'eager': {'1': 10.0, '2': 40.0},
                                              'ort': {'1': 10.0, '2': 6.0}})}
    warnings = bm._busy_machine_warnings(models, [1, 2])
    assert len(warnings) == 1 and 'a eager (10.0 -> 40.0 ms)' in warnings[0]
    assert 'a ort' not in warnings[0]
    assert bm._busy_machine_warnings(models, [1]) == []


# -- hand-made records and small files -------------------------------------------------
def _tiny_onnx(path, size=128):
    """A one-convolution ONNX graph (onnx.helper: no torch export)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(
        np.random.default_rng(0).random((16, 3, 3, 3), dtype=np.float32), 'w')
    graph = helper.make_graph(
        [helper.make_node('Conv', ['input', 'w'], ['out'], pads=[1, 1, 1, 1])], 'tiny',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info('out', TensorProto.FLOAT, [1, 16, size, size])],
        [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]),
              str(path))
    return str(path)


def test_memory_of_an_onnx_file(tmp_path):
    """A fresh process opens the file, runs it: its peak is above what importing the
    runtime took (not the parent's peak, which Linux's ru_maxrss would carry over)."""
    path = _tiny_onnx(tmp_path / 'tiny.onnx')
    got = memory.measure_file(path, threads=1)
    assert got['runtime'] == 'onnxruntime' and got['input_shape'] == [1, 3, 128, 128]
    assert 0 < got['runtime_mb'] < got['peak_mb']
    assert got['model_mb'] == pytest.approx(got['peak_mb'] - got['runtime_mb'], abs=0.2)
    assert got['file_bytes'] == os.path.getsize(path)
    assert memory.file_mb(path) == round(os.path.getsize(path) / 2 ** 20, 3)
    # an OpenVINO IR is its .xml and its .bin
    (tmp_path / 'm.xml').write_bytes(b'x' * 100)
    (tmp_path / 'm.bin').write_bytes(b'b' * 1000)
    assert memory.file_bytes(tmp_path / 'm.xml') == 1100
    # a child that fails: its error line comes back (argparse's, quickly)
    with pytest.raises(memory.MeasureError, match='exit status 2: .*invalid int'):
        memory._run_child([path, '--threads', 'many'], timeout=120)


def _latency(ms_by_backend):
    return {b: {'1': ms, '2': ms / 2} for b, ms in ms_by_backend.items()}


def test_fastest_is_the_least_median():
    record = dict(latency_ms={'eager': {'1': 30.0, '2': 20.0},
                              'ort': {'1': 10.0, '2': 9.0},
                              'et-int8': {'1': 6.0, '2': 9.5},
                              'ov': {'1': 6.0, '2': None}})
    assert bm.fastest(record) == {'1': dict(backend='et-int8', ms=6.0),  # tie: first
                                  '2': dict(backend='ort', ms=9.0)}
    assert bm.fastest(dict(latency_ms={})) == {}


def test_ratios_cover_every_runtime():
    """Rows between two models on every backend both ran, ET and OV included, one on
    the numerator's fastest runtime; int8 / fp32 rows for each runtime."""
    v3 = _latency({'eager': 40.0, 'fused': 30.0, 'ort': 20.0, 'ort-int8': 18.0,
                   'et': 12.0, 'et-int8': 8.0, 'ov': 10.0, 'ov-int8': 9.0})
    v3['ov-int8']['2'] = 2.0  # fastest on 2 threads: ov-int8; on 1: et-int8
    v2 = _latency({'eager': 50.0, 'ort': 25.0, 'et': 16.0, 'et-int8': 10.0, 'ov': 11.0,
                   'ov-int8': 4.0})
    models = {bm.V3_REDUCED: dict(latency_ms=v3, skipped={}, int8_fidelity={
                  'et-int8': {'cosine': 0.99}}),
              bm.MMDET_SSDLITE: dict(latency_ms=v2, skipped={})}
    rows = {r['key']: r for r in bm.compute_ratios(models, [1, 2])}
    key = 'ssdlite_v3_reduced_vs_mmdet_v2'
    for backend in ('ort', 'et', 'et-int8', 'ov', 'ov-int8'):
        row = rows[f'{key}:{backend}']
        assert row['value'] == pytest.approx(v3[backend]['1'] / v2[backend]['1'],
                                             abs=1e-4)
        assert row['target'] == 0.73
    assert f'{key}:fused' not in rows and f'{key}:ort-int8' not in rows  # one side
    fastest = rows[f'{key}:fastest']
    assert fastest['backends'] == {'1': 'et-int8', '2': 'ov-int8'}
    assert fastest['numerator'] == [bm.V3_REDUCED, 'et-int8']
    assert fastest['values'] == {'1': 0.8, '2': 1.0}  # 8/10, 2/2
    assert fastest['ok'] is False and 'fastest' in fastest['label']
    for runtime in ('et', 'ov'):
        row = rows[f'ssdlite_v3_reduced_{runtime}_int8_vs_fp32']
        assert row['value'] == pytest.approx(v3[f'{runtime}-int8']['1'] /
                                             v3[runtime]['1'], abs=1e-4)
    assert rows['ssdlite_v3_reduced_et_int8_vs_fp32']['int8_fidelity'] == {
        'cosine': 0.99}
    text = bm.format_report(_report(models))
    assert '(et-int8)' in text and '(ov-int8)' in text  # the fastest row's backends


def _report(models, threads=(1, 2)):
    """A hand-made report around ``models`` (records as run_benchmark writes them)."""
    records = []
    for name, m in models.items():
        entry = dict(name=name, short=name[:12], source='ours', task='detection',
                     input_size=[160, 160], params=1, madds=1.0,
                     accuracy=dict(value=22.0, metric='mAP', dataset='coco'),
                     skipped={}, memory_mb={}, memory_skipped={}, file_mb={},
                     int8_fidelity={}, runs_ms={})
        entry.update(m)
        entry['fastest'] = bm.fastest(entry)
        records.append(entry)
    return dict(
        settings=dict(threads=list(threads), repeats=1, warmup=1, weights='random',
                      int8_calibration='noise', denormals_flushed=True,
                      global_pool=False, memory_threads=[1]),
        machine=dict(cpu='a CPU', cpu_flags={'avx2': True, 'amx_int8': False},
                     cpu_count=2, versions={'torch': '2', 'openvino': None},
                     load_average_before=None, load_average_after=None),
        what_is_timed={'detection': 'the network'}, models=records,
        ratios=bm.compute_ratios({r['name']: r for r in records}, threads),
        warnings=[], seconds=1.0)


def test_skipped_backends_are_reported(tmp_path):
    """A backend whose file cannot be made (torchvision: no exporter) or that fails
    to run is recorded with its reason, in the JSON record and the tables."""
    entry = Entry(name=bm.TV_SSDLITE, short='tv', source='torchvision',
                  task='detection')
    files = bm.ModelFiles(bm.Built(entry, raw=None, timed=None), (160, 160), tmp_path,
                          images=lambda: pytest.fail('no calibration needed'),
                          log=lambda msg: None)
    for backend in bm.FILE_BACKENDS:
        with pytest.raises(bm.Unavailable, match='mmdet / mmseg models only'):
            files.make(backend)
    assert not list(tmp_path.iterdir())

    from mobilenet_tasks.analysis.measure import _working
    record = dict(name='m', skipped={})

    def fails():
        raise RuntimeError('kernel missing')
    runners = [bm.Runner('m', 'et', fails), bm.Runner('m', 'ort', lambda: None)]
    kept = _working(runners, {'m': record}, 1, log=lambda msg: None)
    assert [r.backend for r in kept] == ['ort']
    assert record['skipped'] == {'et': 'running it on 1 thread(s): RuntimeError: '
                                       'kernel missing'}

    report = _report({bm.V3_REDUCED: dict(latency_ms=_latency({'eager': 9.0}),
                                          skipped={'et': 'no exporter here'},
                                          memory_skipped={'eager': 'timed out'})})
    text = bm.format_report(report)
    assert f'n/a: {bm.V3_REDUCED} et: no exporter here' in text
    assert f'n/a: memory of {bm.V3_REDUCED} eager: timed out' in text
    assert '| n/a |' in text
    rows = {r['key']: r for r in report['ratios']}
    assert any('no exporter here' in m
               for m in rows['ssdlite_v3_reduced_et_int8_vs_fp32']['missing'])


def test_report_tables_and_figure(tmp_path):
    """The fastest-runtime and memory tables, the machine line, and Figure 1 on each
    model's fastest runtime."""
    from mobilenet_tasks.analysis.figure import _point
    models = {bm.V3_REDUCED: dict(
        latency_ms=_latency({'eager': 40.0, 'ort': 20.0, 'et': 12.0}),
        memory_mb={'eager': {'1': dict(peak=900.0, runtime=800.0, model=100.0)},
                   'et': {'1': dict(peak=760.0, runtime=735.0, model=25.0)}},
        file_mb={'ort': 11.87, 'et': 11.88})}
    report = _report(models)
    text = bm.format_report(report)
    assert '### Fastest runtime on this machine' in text
    assert '| ExecuTorch XNNPACK fp32 (12.0) | ExecuTorch XNNPACK fp32 (6.00) |' in text
    assert '760 (+25); 11.88' in text and '900 (+100) |' in text
    assert 'a CPU (avx2)' in text and 'openvino not installed' in text
    record = report['models'][0]
    assert _point(record, None, 1) == (12.0, 'et')
    assert _point(record, 'eager', 2) == (20.0, 'eager')
    png = Path(bm.plot_figure1(report, tmp_path / 'fig.png')).read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'


def test_quick_settings_cover_every_runtime():
    """--quick times every backend of the V3† SSDLite, the ratio rows' runners (and
    eager) of the others, and memory; --no-memory turns memory off."""
    s = bm.quick_settings()
    assert s.memory and s.quick

    def entry(name, source='ours'):
        return Entry(name=name, short='', source=source, task='detection')
    assert bm.backends_for(entry(bm.V3_REDUCED), s) == list(bm.BACKENDS)
    assert bm.backends_for(entry(bm.LRASPP_V3), s) == ['eager', 'ort', 'ort-int8']
    assert bm.backends_for(entry(bm.MMDET_SSDLITE, 'mmdet'), s) == ['eager']
    full = bm.Settings()
    assert bm.backends_for(entry(bm.MMDET_SSDLITE, 'mmdet'), full) == list(bm.BACKENDS)
    for backend in ('et', 'et-int8', 'ov', 'ov-int8'):
        assert backend in bm.BACKEND_LABELS and backend in bm.FILE_BACKENDS
    tool = _load_tool()
    args = tool.parse_args(['--quick', '--no-memory'])
    assert tool.settings_from_args(args).memory is False
    assert tool.settings_from_args(tool.parse_args(['--quick'])).memory is True


def test_machine_info(monkeypatch):
    info = ('model name\t: Some CPU\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n')
    assert machine.cpu_name(info) == 'Some CPU'
    assert machine.cpu_flags(info) == dict(avx2=True, avx512f=True, avx512_vnni=True,
                                           avx_vnni=False, amx_int8=False)
    monkeypatch.setitem(machine.RUNTIME_PACKAGES, 'nncf', 'no-such-package-here')
    found = machine.versions()
    assert found['nncf'] is None and found['onnxruntime']
    assert set(found) == {'torch', 'onnxruntime', 'executorch', 'openvino', 'nncf'}
