"""Our params and MAdds against the paper's tables: the library function and the tools."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mobilenet_tasks.analysis.paper_tables import (MARKDOWN_BEGIN, MARKDOWN_END,
                                                   compare_with_paper,
                                                   segmentation_rows_markdown)
from mobilenet_tasks.utils.model_index import load_model_index
from mobilenet_tasks.utils.paper import PAPER_TABLES, TABLE7_COLUMNS, TABLE8_ROWS

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


# -- the paper's rows are written once (mobilenet_tasks.utils.paper) -------------------
def test_every_paper_reference_is_a_row_of_paper_py():
    entries = [entry for entry in load_model_index() if 'Paper' in entry]
    assert entries
    for entry in entries:
        table, row = str(entry['Paper']['Table']), str(entry['Paper']['Row'])
        assert table in PAPER_TABLES, f'{entry["Name"]}: no Table {table!r} in paper.py'
        assert row in PAPER_TABLES[table][1], (
            f'{entry["Name"]}: Table {table} of paper.py has no row {row!r}')
        if table == '7':
            assert row in TABLE7_COLUMNS, entry['Name']
        if table == '8':
            assert row in TABLE8_ROWS, entry['Name']


def test_metafile_input_sizes_are_the_paper_tables():
    """A metafile's ``Input Size`` of a paper row is the one the paper counted at."""
    checked = 0
    for entry in load_model_index():
        size = (entry.get('Metadata') or {}).get('Input Size')
        if 'Paper' not in entry or size is None:
            continue
        height, width = PAPER_TABLES[str(entry['Paper']['Table'])][0]
        assert size == f'{height}x{width}', (entry['Name'], size)
        checked += 1
    assert checked >= 20


def test_metafile_holds_no_paper_figures():
    """The figures are paper.py's: a metafile entry names its row, nothing more."""
    figures = ('Results', 'Params', 'MAdds', 'FLOPs', 'Latency')
    for path in ('configs/metafile.yml', 'configs/classification/metafile.yml'):
        for model in yaml.safe_load((ROOT / path).read_text())['Models']:
            assert set(model.get('Paper') or {}) <= {'Table', 'Row'}, model
            found = [k for k in figures
                     if k in model or k in (model.get('Metadata') or {})]
            assert not found, f'{path}: {model["Name"]} repeats {found}'


def test_readme_table_is_the_generated_one():
    """configs/README.md's table of the Table 7/8 rows is what ``paper_tables.py
    --markdown`` prints from paper.py and the model index."""
    readme = (ROOT / 'configs/README.md').read_text()
    begin, end = MARKDOWN_BEGIN, MARKDOWN_END
    assert readme.count(begin) == 1 and readme.count(end) == 1
    written = readme.split(begin + '\n', 1)[1].split(end, 1)[0]
    expected = segmentation_rows_markdown(load_model_index())
    assert written == expected, (
        'configs/README.md differs from `python tools/analysis_tools/paper_tables.py '
        '--markdown`: paste its output between the markers')
    names = {e['Name'] for e in load_model_index()
             if str((e.get('Paper') or {}).get('Table')) in ('7', '8')}
    assert len(expected.splitlines()) == 2 + len(names) == 15


def assert_diff(printed: str, ours: str, paper: float, rounding: float, line: str):
    """``printed`` (``'-2.2%'``) is ``ours / paper - 1``, up to the rounding of both
    printed numbers (``ours`` to ``rounding``, the percentage to 0.05)."""
    allowed = 0.05 + 100 * rounding / paper + 1e-9
    assert abs(float(printed.rstrip('%')) - (float(ours) / paper - 1) * 100
               ) <= allowed, line


def test_readme_tool_outputs_have_paper_py_figures():
    """The outputs of ``paper_tables.py`` pasted in configs/README.md: one line per
    entry of Tables 6, 7 and 8, each with paper.py's row, input and figures, and
    differences that are those of the figures beside them."""
    readme = (ROOT / 'configs/README.md').read_text()
    entries = [e for e in load_model_index()
               if str((e.get('Paper') or {}).get('Table')) in ('6', '7', '8')]
    assert len(entries) == 24
    for entry in entries:
        table, row = str(entry['Paper']['Table']), str(entry['Paper']['Row'])
        lines = [line for line in readme.splitlines()
                 if line.startswith(entry['Name'] + ' ')]
        assert len(lines) == 1, (entry['Name'], lines)
        head = re.escape(f'{entry["Name"]} ') + r' *' + re.escape(f'{table} {row}') + ' '
        match = re.match(head, lines[0])
        assert match, (lines[0], table, row)
        (shape, params, paper_params, d_params, madds, paper_madds, d_madds,
         ok) = lines[0][match.end():].split()
        height, width = PAPER_TABLES[table][0]
        want_params, want_madds = PAPER_TABLES[table][1][row]
        assert shape == f'{height}x{width}', lines[0]
        assert ok == 'yes', lines[0]
        assert float(paper_madds) == round(want_madds), lines[0]
        assert_diff(d_madds, madds, want_madds, 0.05, lines[0])
        if want_params is None:
            assert (paper_params, d_params) == ('-', '-'), lines[0]
        else:
            assert float(paper_params) == round(want_params, 2), lines[0]
            assert_diff(d_params, params, want_params, 0.0005, lines[0])
    counts = [int(n) for n in re.findall(r'^(\d+) rows, 0 outside 5%$', readme, re.M)]
    per_table = [sum(str(e['Paper']['Table']) == t for e in entries)
                 for t in ('6', '7', '8')]
    assert counts == per_table == [11, 11, 2]
