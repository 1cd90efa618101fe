"""The package's structure (docs/architecture.md): imports point one way, no module
imports itself back through others, no module grows past MAX_LINES.

Imports are read from the source (``ast``), those inside functions included: an import
deferred into a function to dodge a circle is still a circle.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'mobilenet_tasks'
MAX_LINES = 500

# Bottom first. A package may import packages of its own layer or below, never above.
LAYERS = [
    ('shared helpers', {'version', 'registry', 'utils'}),
    ('models, data, training', {'models', 'datasets', 'evaluation', 'engine',
                                'converters'}),
    ('runtimes', {'backends'}),
    ('inference API', {'apis'}),
    ('export and quantization', {'deployment'}),
    ('measurement', {'analysis'}),
    ('entry points', {'__init__', 'testing'}),
]


def _modules() -> Dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        out['.'.join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> Set[str]:
    """Our modules that ``name`` imports (anywhere in its source)."""
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            targets = [f'{module}.{a.name}' for a in node.names]
            found |= {t if t in MODULES else module for t in targets}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to (``apis``,
    ``registry``...; ``__init__`` for the package itself)."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def _layer(part: str) -> int:
    for i, (_, parts) in enumerate(LAYERS):
        if part in parts:
            return i
    raise AssertionError(f'mobilenet_tasks.{part} is in no layer of LAYERS: add it '
                         'there and to docs/architecture.md')


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checks_can_fail():
    # a planted circle and a planted upward import are found
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert _layer('apis') > _layer('backends') > _layer('utils')
    assert GRAPH['mobilenet_tasks.apis.inferencer'] >= {
        'mobilenet_tasks.backends', 'mobilenet_tasks.utils.weights'}


def test_no_import_circle_among_modules():
    # a package's __init__ re-exporting its modules is not a circle with them
    graph = {m: {d for d in deps if not m.startswith(d + '.')}
             for m, deps in GRAPH.items()}
    assert _cycles(graph) == []


def test_imports_point_down_the_layers():
    upward = sorted(
        f'{module} imports {dep} ({LAYERS[_layer(_part(dep))][0]}, above '
        f'{LAYERS[_layer(_part(module))][0]})'
        for module, deps in GRAPH.items() for dep in deps
        if _layer(_part(dep)) > _layer(_part(module)))
    assert upward == []


@pytest.mark.parametrize('name', sorted(MODULES))
def test_no_module_over_max_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, (f'{name} has {lines} lines: split it by concern '
                                f'(at most {MAX_LINES})')
