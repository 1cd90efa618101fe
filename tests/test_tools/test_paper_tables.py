"""Our params and MAdds against the paper's tables: the library function and the tools."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mobilenet_tasks.utils.model_index import load_model_index
from mobilenet_tasks.utils.paper import compare_with_paper

ROOT = Path(__file__).resolve().parents[2]
V3_LARGE = ROOT / 'configs/classification/mobilenet-v3-large_8xb128_in1k.py'


def run_tools():
    """Run both tools at once, each in a fresh interpreter; return (rc, stdout, stderr)
    of each."""
    # paper_tables.py on Table 3 only: the test above checks every table's rows
    # in-process; counting Table 6's SSDLite models again here would double the cost.
    commands = dict(
        paper_tables=['tools/analysis_tools/paper_tables.py', '--table', '3'],
        get_flops=['tools/analysis_tools/get_flops.py', str(V3_LARGE)])
    procs = {
        name: subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, args in commands.items()}
    results = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            results[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def test_every_paper_row_is_within_tolerance():
    entries = load_model_index()
    with_paper = [entry['Name'] for entry in entries if entry.get('Paper')]
    assert len(with_paper) >= 7
    rows = compare_with_paper(entries)
    assert [row['name'] for row in rows] == with_paper
    for row in rows:
        assert row['ok'], row
        assert abs(row['d_madds']) <= 0.05, row
        assert row['params'] > 0 and row['madds'] > 0
    [v3_large] = [row for row in rows if row['name'] == 'mobilenet-v3-large_8xb128_in1k']
    assert (v3_large['table'], v3_large['row'], v3_large['shape']) == (
        '3', 'V3-Large 1.0', (224, 224))
    assert v3_large['params'] == pytest.approx(5.483, abs=0.001)
    assert v3_large['madds'] == pytest.approx(216.6, abs=0.1)


def test_a_wrong_config_is_reported(tmp_path):
    # MobileNetV3-Large at width 0.5 claiming to be the paper's 1.0 row.
    config = tmp_path / 'wrong.py'
    config.write_text(f"_base_ = {str(V3_LARGE)!r}\n"
                      "model = dict(backbone=dict(widen_factor=0.5),\n"
                      "             head=dict(in_channels=480))\n")
    entry = dict(Name='wrong', Config=str(config),
                 Paper={'Table': '3', 'Row': 'V3-Large 1.0'})
    [row] = compare_with_paper([entry, dict(Name='no-paper', Config=str(config))])
    assert row['name'] == 'wrong'
    assert row['ok'] is False
    assert row['d_madds'] < -0.3 and row['d_params'] < -0.05
    assert (row['paper_params'], row['paper_madds']) == (5.4, 219)


def test_paper_tables_and_get_flops_tools():
    results = run_tools()

    # paper_tables.py: one line per Table 3 entry of the model index, all "yes", and
    # no line for another table's entries.
    returncode, out, err = results['paper_tables']
    assert returncode == 0, err[-3000:]
    entries = [entry for entry in load_model_index() if entry.get('Paper')]
    names = [e['Name'] for e in entries if str(e['Paper']['Table']) == '3']
    assert len(names) >= 7
    for name in names:
        [line] = [line for line in out.splitlines() if line.startswith(name + ' ')]
        assert line.rstrip().endswith('yes'), line
        assert line.split()[1] == '3'
    for entry in entries:
        if entry['Name'] not in names:
            assert not re.search(rf'^{re.escape(entry["Name"])} ', out, re.M)
    assert re.search(rf'^{len(names)} rows, 0 outside 5%$', out, re.M), out[-2000:]

    # get_flops.py on MobileNetV3-Large 1.0 (at Table 3's 224x224).
    returncode, out, err = results['get_flops']
    assert returncode == 0, err[-3000:]
    params = float(re.search(r'^params: ([\d.]+) M$', out, re.M).group(1))
    madds = float(re.search(r'^MAdds: +([\d.]+) M', out, re.M).group(1))
    assert params == pytest.approx(5.48, abs=0.01)
    assert madds == pytest.approx(216.6, abs=0.1)
    assert re.search(r'^input: +224x224$', out, re.M)
    assert 'Table 3, V3-Large 1.0' in out
