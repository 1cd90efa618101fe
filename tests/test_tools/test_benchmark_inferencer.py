"""tools/analysis_tools/benchmark_inferencer.py --quick: both sides run on the same video
and a ratio is printed (detection against mmdet's DetInferencer, segmentation against
mmseg's MMSegInferencer)."""
import json
from pathlib import Path

import pytest
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]


def _load_tool():
    return load_tool('tools/analysis_tools/benchmark_inferencer.py')


@pytest.mark.parametrize('model, theirs', [
    ('ssdlite_v3_large_demo', 'mmdet DetInferencer'),
    ('lraspp_v3_large_demo', 'mmseg MMSegInferencer'),
])
def test_quick(tmp_path, capsys, model, theirs):
    tool = _load_tool()
    report = tool.main([model, '--quick', '--stages', '--threads', '1', '--work-dir',
                        str(tmp_path)])
    out = capsys.readouterr().out
    assert 'ours / theirs:' in out and theirs in out
    assert report['ratio'] > 0 and report['video']['frames'] == 12
    saved = json.loads((tmp_path / f'{model}_benchmark.json').read_text())
    assert saved['median_fps']['ours'] > 0 and saved['median_fps']['theirs'] > 0
