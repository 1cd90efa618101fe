"""tools/analysis_tools/benchmark.py: params, MAdds and latency on four backends for
our configs and the stock peers, the paper's ratios within one run, the Figure 1 plot.

The benchmark itself runs once, in quick mode (small inputs, one round): its figures
mean nothing, the test checks the structure of the report and that every number is
sane and where it should be."""
import json
from pathlib import Path

import pytest

from mobilenet_tasks.analysis import benchmark as bm
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():
    return load_tool('tools/analysis_tools/benchmark.py')


def test_quick(tmp_path, capsys):
    """One quick run (one test, so that pytest-xdist workers do not each run it)."""
    tool = _load_tool()
    # one thread: the all-cores round is the same code, and slow on a shared machine
    rc = tool.main(['--quick', '--threads', '1', '--work-dir', str(tmp_path), '--out',
                    str(tmp_path / 'report.json'), '--plot', str(tmp_path / 'fig1.png')])
    assert rc == 0
    assert "SSDLite V3† / mmdet's SSDLite V2" in capsys.readouterr().out
    report = json.loads((tmp_path / 'report.json').read_text())
    _check_structure(report)
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
    # the ratio rows' runners ran: every backend of the V3† SSDLite, ONNX of LR-ASPP V3
    assert set(models[bm.V3_REDUCED]['latency_ms']) == set(bm.BACKENDS)
    assert {'ort', 'ort-int8'} <= set(models[bm.LRASPP_V3]['latency_ms'])
    assert models[bm.V3_REDUCED]['bn_left'] == {}
    assert models[bm.V3_REDUCED]['bn_folded'] > 0
    fid = models[bm.LRASPP_V3]['int8_fidelity']
    assert 0 <= fid['argmax_agreement'] <= 1 and fid['cosine'] > 0.5
    # accuracies: ours the paper's, peers their published ones
    assert models[bm.V3_REDUCED]['accuracy']['value'] == 22.0
    assert models[bm.LRASPP_V3]['accuracy']['value'] == 72.36
    assert models[bm.MMDET_SSDLITE]['accuracy']['value'] == 21.3
    assert models[bm.MMSEG_LRASPP]['accuracy']['value'] == 69.54
    assert models[bm.TV_SSDLITE]['accuracy']['value'] == 21.3


def _check_ratios(report):
    rows = {r['key']: r for r in report['ratios']}
    assert {spec['key'] for spec in bm.RATIOS} <= set(rows)
    models = {m['name']: m for m in report['models']}
    for row in rows.values():  # every row of the quick run is computed
        assert row['missing'] is None, row
        assert set(row['values']) == {str(n) for n in report['settings']['threads']}
        (num, nb), (den, db) = row['numerator'], row['denominator']
        latency = models[num]['latency_ms'][nb]['1'], models[den]['latency_ms'][db]['1']
        expected = latency[0] / latency[1]
        assert row['value'] == pytest.approx(expected, rel=1e-3)
    assert rows['ssdlite_v3_reduced_vs_mmdet_v2']['target'] == 0.73
    assert rows['lraspp_v3_vs_raspp_v2']['target'] == 0.63
    for key in ('ssdlite_v3_reduced_vs_mmdet_v2', 'lraspp_v3_vs_raspp_v2'):
        assert isinstance(rows[key]['ok'], bool)
    assert 'the target is at 1024x2048' in rows['lraspp_v3_vs_raspp_v2']['note']
    assert rows['ssdlite_v3_reduced_int8_vs_fp32']['int8_fidelity'] is not None


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
