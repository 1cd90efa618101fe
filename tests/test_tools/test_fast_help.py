"""Every tool answers ``--help`` and argument errors at once: before torch, mmdet,
mmseg, mmpretrain or OpenCV are imported (4-11 s on these machines).

Each tool is run in a fresh interpreter (``runpy.run_path(tool, run_name='__main__')``
with its ``sys.argv``), which then prints the exit code and the heavy modules loaded.
The tools are found by a glob, so a new one is checked too.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
HEAVY = ('torch', 'mmdet', 'mmseg', 'mmpretrain', 'cv2')

#: Every tool: ``tools/*.py`` and ``tools/*/*.py`` (the ``.sh`` launchers are not
#: Python; a ``_*.py`` would be a module tools share, not a tool).
TOOLS = sorted(str(path.relative_to(ROOT)) for pattern in ('tools/*.py', 'tools/*/*.py')
               for path in ROOT.glob(pattern) if not path.name.startswith('_'))

#: Tools that load some of HEAVY before answering, and which.
ALLOWED = {
    # Both load their generator (mobilenet_tasks/datasets/demo_coco.py,
    # demo_cityscapes.py: numpy and OpenCV, no torch) when imported, for its
    # MANIFEST_NAME and functions as module attributes: about 0.3 s for --help, so left
    # as they are (not part of the change that made the other tools light).
    'tools/dataset_converters/make_demo_coco.py': {'cv2'},
    'tools/dataset_converters/make_demo_cityscapes.py': {'cv2'},
}

_RUN = """
import json, runpy, sys
sys.argv = sys.argv[1:]  # [tool, *argv]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit as exit:
    code = 0 if exit.code is None else exit.code
print('@@fast-help ' + json.dumps([code, sorted(m for m in %r if m in sys.modules)]))
""" % (HEAVY, )


def run_tool(tool: str, *argv: str):
    """``(exit code, heavy modules loaded, output)`` of ``tool argv`` in a fresh
    interpreter."""
    proc = subprocess.run([sys.executable, '-c', _RUN, str(ROOT / tool), *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    marker = '@@fast-help '
    lines = [line for line in proc.stdout.splitlines() if line.startswith(marker)]
    assert proc.returncode == 0 and lines, output[-3000:]
    code, heavy = json.loads(lines[-1][len(marker):])
    return code, set(heavy), output


def test_every_tool_is_found():
    assert {'tools/train.py', 'tools/test.py', 'tools/infer.py',
            'tools/deployment/quantize_onnx.py',
            'tools/model_converters/torchvision_mobilenet.py'} <= set(TOOLS)
    assert not any(tool.endswith('.sh') or '/_' in tool for tool in TOOLS)
    assert set(ALLOWED) <= set(TOOLS), 'ALLOWED names a tool that is gone'


@pytest.mark.parametrize('tool', TOOLS)
def test_help_answers_before_the_heavy_imports(tool):
    code, heavy, output = run_tool(tool, '--help')
    assert code == 0, output[-3000:]
    assert 'usage:' in output, output[-3000:]
    assert heavy <= ALLOWED.get(tool, set()), (
        f'{tool} --help imported {sorted(heavy)}: import them after parse_args()')


@pytest.mark.parametrize('tool', ['tools/train.py', 'tools/test.py', 'tools/infer.py'])
def test_argument_error_answers_before_the_heavy_imports(tool):
    code, heavy, output = run_tool(tool, 'x.py', '--threads', 'two')
    assert code == 2, output[-3000:]
    assert "--threads: invalid int value: 'two'" in output, output[-3000:]
    assert not heavy, f'{tool} imported {sorted(heavy)} before refusing the arguments'

