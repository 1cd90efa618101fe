"""The benchmark's results: each model's fastest backend, the ratio rows
(:data:`~.catalogue.RATIOS`) computed from the medians of one run, the markdown tables
and the JSON file."""
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .catalogue import BACKEND_LABELS, BACKENDS, RATIOS

FASTEST = 'fastest'  # the backend of a ratio row on the numerator's fastest runtime


def fastest(record: dict) -> Dict[str, dict]:
    """A model's fastest backend at each thread count: ``{threads: {'backend': ...,
    'ms': ...}}`` (the least median of ``record['latency_ms']``; a tie goes to the
    first in :data:`BACKENDS`)."""
    best: Dict[str, dict] = {}
    latency = record.get('latency_ms') or {}
    for backend in [b for b in BACKENDS if b in latency] + [
            b for b in latency if b not in BACKENDS]:
        for n, ms in latency[backend].items():
            if ms is not None and (n not in best or ms < best[n]['ms']):
                best[n] = dict(backend=backend, ms=ms)
    return {n: best[n] for n in sorted(best, key=int)}


def compute_ratios(models: Dict[str, dict], threads: Sequence[int]) -> List[dict]:
    """The ratio rows (:data:`RATIOS`) from the medians of one run.

    Every spec gives a row keyed ``key`` (None values where a side was not measured,
    ``missing`` says which); a ``same_backend`` spec also gives a row keyed
    ``key:backend`` for every other backend measured on both sides, and one keyed
    ``key:fastest``, at each thread count on the backend that is fastest for the
    numerator model at that count (``backends``: which), on both sides. ``value`` is
    the ratio at one thread (what a target is checked on), ``values`` at every thread
    count.
    """
    rows = []
    for spec in RATIOS:
        (num, num_backend), (den, den_backend) = spec['num'], spec['den']
        rows.append(_ratio_row(spec, models, threads, num_backend, den_backend,
                               spec['key'], spec['label'] + (
                                   f' ({BACKEND_LABELS[num_backend]})'
                                   if spec.get('same_backend') else '')))
        if not spec.get('same_backend'):
            continue
        for backend in BACKENDS:
            if backend != num_backend and all(
                    models.get(name, {}).get('latency_ms', {}).get(backend)
                    for name in (num, den)):
                rows.append(_ratio_row(spec, models, threads, backend, backend,
                                       f'{spec["key"]}:{backend}',
                                       f'{spec["label"]} ({BACKEND_LABELS[backend]})'))
        best = fastest(models.get(num, {}))
        rows.append(_ratio_row(
            spec, models, threads, FASTEST, FASTEST, f'{spec["key"]}:{FASTEST}',
            f"{spec['label']} (on the numerator's fastest runtime)",
            {str(n): best.get(str(n), {}).get('backend') for n in threads}))
    return rows


def _latency(models, name, backend, n) -> Optional[float]:
    return (models.get(name, {}).get('latency_ms', {}).get(backend) or {}).get(str(n))


def _ratio_row(spec, models, threads, num_backend, den_backend, key, label,
               per_thread: Optional[Dict[str, Optional[str]]] = None) -> dict:
    """One row; ``per_thread``: the backend of both sides at each thread count (the
    row's backends are then :data:`FASTEST`)."""
    num, den = spec['num'][0], spec['den'][0]
    values, missing = {}, []
    if per_thread is None:
        per_thread = {str(n): None for n in threads}
        sides = ((num, num_backend), (den, den_backend))
    else:
        sides = sorted({(name, b) for b in per_thread.values() if b
                        for name in (num, den)}, key=lambda k: (k[0] != num, k))
        if not any(per_thread.values()):
            missing.append(f'{num} (not measured)')
    for name, backend in sides:
        if not models.get(name, {}).get('latency_ms', {}).get(backend):
            reason = models.get(name, {}).get('skipped', {}).get(backend)
            missing.append(f'{name} {backend}' + (f' ({reason})' if reason else
                                                  ' (not measured)'))
    if not missing:
        for n in threads:
            b_num = per_thread[str(n)] or num_backend
            b_den = per_thread[str(n)] or den_backend
            a, b = _latency(models, num, b_num, n), _latency(models, den, b_den, n)
            values[str(n)] = round(a / b, 4) if a and b else None
    value = values.get('1')
    target = spec.get('target')
    first = per_thread.get('1') or next(iter(per_thread.values()), None)
    row = dict(key=key, label=label,
               numerator=[num, first if num_backend == FASTEST else num_backend],
               denominator=[den, first if den_backend == FASTEST else den_backend],
               value=value, values=values,
               target=target, paper=spec.get('paper'),
               ok=None if value is None or target is None else value <= target,
               missing=missing or None)
    if num_backend == FASTEST:
        row['backends'] = dict(per_thread)
    if spec.get('target_size') and not missing:
        size = models[num]['input_size']
        if tuple(size) != tuple(spec['target_size']):
            row['note'] = (f'measured at {size[0]}x{size[1]}; the target is at '
                           f'{spec["target_size"][0]}x{spec["target_size"][1]}')
    if spec.get('fidelity') and spec['fidelity'] in models:
        row['int8_fidelity'] = (models[spec['fidelity']].get('int8_fidelity')
                                or {}).get(num_backend)
    return row


def format_ms(v) -> str:
    """A latency in ms to about three significant digits ('-' for None)."""
    if v is None:
        return '-'
    return f'{v:.0f}' if v >= 100 else f'{v:.1f}' if v >= 10 else f'{v:.2f}'


def format_report(report: dict) -> str:
    """The report as markdown tables."""
    threads = report['settings']['threads']
    lines = []
    for task in ('detection', 'segmentation'):
        rows = [m for m in report['models'] if m['task'] == task]
        if rows:
            lines += _model_table(report, task, rows, threads)
    lines += _fastest_table(report, threads)
    for task in ('detection', 'segmentation'):
        rows = [m for m in report['models'] if m['task'] == task and (
            m.get('memory_mb') or m.get('memory_skipped'))]
        if rows:
            lines += _memory_table(report, task, rows)
    lines += _ratio_table(report, threads)
    for warning in report.get('warnings') or []:
        lines.append(f'\n**Warning**: {warning}')
    st = report['settings']
    machine = report['machine']
    flags = machine.get('cpu_flags') or {}
    flags = ', '.join(f for f, have in flags.items() if have) or \
        ('none of ' + ', '.join(flags) if flags else 'flags unknown')
    versions = ', '.join(f'{k} {v or "not installed"}'
                         for k, v in (machine.get('versions') or {}).items())
    lines.append(f'\nWeights {st["weights"]}; int8 calibration: {st["int8_calibration"]}'
                 f'; denormals flushed: {st["denormals_flushed"]}; '
                 f'{st["warmup"]} warm-up rounds, runners interleaved. Machine: '
                 f'{machine["cpu"]} ({flags}), '
                 f'{machine["cpu_count"]} cores, '
                 f'load average {machine["load_average_before"]} before, '
                 f'{machine["load_average_after"]} after; '
                 f'{versions or "torch " + str(machine.get("torch"))}. '
                 f'{report["seconds"]} s.')
    if st['global_pool']:
        lines.append('Our LR-ASPP heads ran with global pooling (--global-pool), not '
                     "the paper's 49x49 pool.")
    return '\n'.join(lines)


def _model_table(report, task, rows, threads) -> List[str]:
    size = rows[0]['input_size']
    lines = [f'### {task} at {size[0]}x{size[1]}: latency ms, median of '
             f'{report["settings"]["repeats"]} (threads '
             f'{" / ".join(map(str, threads))})\n',
             f'Timed: {report["what_is_timed"][task]}.\n']
    head = ['model', 'source', 'params M', 'MAdds B', 'accuracy'] + [
        BACKEND_LABELS[b] for b in BACKENDS]
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for m in rows:
        acc = m['accuracy']
        acc_text = '-' if not acc else f'{acc["value"]:.1f} {acc["metric"]}' + (
            ' (paper)' if m['source'] == 'ours' else '')
        cells = [m['name'], m['source'], f'{m["params"] / 1e6:.3f}',
                 f'{m["madds"] / 1e9:.3f}', acc_text]
        for backend in BACKENDS:
            latency = m['latency_ms'].get(backend)
            if latency:
                cells.append(' / '.join(format_ms(latency.get(str(n)))
                                        for n in threads))
            elif backend in m['skipped']:
                cells.append('n/a')
            else:
                cells.append('-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    skipped = {(m['name'], b): r for m in rows for b, r in m['skipped'].items()}
    for (name, backend), reason in skipped.items():
        lines.append(f'\nn/a: {name} {backend}: {reason}')
    lines.append('')
    return lines


def _fastest_table(report, threads) -> List[str]:
    lines = ['### Fastest runtime on this machine (median ms)\n']
    head = ['model', 'task'] + [f'{n} thread{"s" if n > 1 else ""}' for n in threads]
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for m in report['models']:
        best = m.get('fastest') or {}
        cells = [m['name'], m['task']]
        for n in threads:
            b = best.get(str(n))
            cells.append('-' if not b else
                         f'{BACKEND_LABELS.get(b["backend"], b["backend"])} '
                         f'({format_ms(b["ms"])})')
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
    return lines


def _memory_table(report, task, rows) -> List[str]:
    """Peak memory (model's share) at each thread count measured, and the file."""
    backends = [b for b in BACKENDS if any(
        b in (m.get('memory_mb') or {}) or b in (m.get('memory_skipped') or {})
        for m in rows)]
    counts = report['settings'].get('memory_threads') or []
    lines = [f'### {task}: peak memory MiB (the model\'s share), threads '
             f'{" / ".join(map(str, counts))}; file MiB\n',
             'Each in a fresh process: peak RSS of opening the file (PyTorch: building '
             'the model) and running it twice; the share is the peak less the RSS '
             'after importing the runtime.\n']
    head = ['model'] + [BACKEND_LABELS[b] for b in backends]
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for m in rows:
        cells = [m['name']]
        for b in backends:
            mem = (m.get('memory_mb') or {}).get(b)
            if not mem:
                cells.append('n/a' if b in (m.get('memory_skipped') or {}) else '-')
                continue
            text = ' / '.join(f'{v["peak"]:.0f} ({v["model"]:+.0f})'
                              for _, v in sorted(mem.items(), key=lambda kv: int(kv[0])))
            size = (m.get('file_mb') or {}).get(b)
            cells.append(text + ('' if size is None else f'; {size:.2f}'))
        lines.append('| ' + ' | '.join(cells) + ' |')
    for m in rows:
        for b, reason in (m.get('memory_skipped') or {}).items():
            lines.append(f'\nn/a: memory of {m["name"]} {b}: {reason}')
    lines.append('')
    return lines


def _ratio_table(report, threads) -> List[str]:
    lines = ['### Ratios within this run (lower = faster numerator)\n']
    head = ['ratio'] + [f'{n} thread{"s" if n > 1 else ""}' for n in threads] + [
        'target (1 thread)', 'paper']
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for r in report['ratios']:
        on = r.get('backends') or {}
        cells = [r['label']] + [
            ('-' if r['values'].get(str(n)) is None else f'{r["values"][str(n)]:.3f}')
            + (f' ({on[str(n)]})' if on.get(str(n)) else '') for n in threads]
        if r['target'] is None:
            cells.append('report')
        else:
            verdict = '' if r['ok'] is None else (' ok' if r['ok'] else ' MISSED')
            cells.append(f'<= {r["target"]}{verdict}')
        cells.append(r['paper'] or '')
        lines.append('| ' + ' | '.join(cells) + ' |')
    for r in report['ratios']:
        if r.get('missing'):
            lines.append(f'\n{r["label"]}: not computed, missing '
                         + '; '.join(r['missing']))
        if r.get('note'):
            lines.append(f'\n{r["label"]}: {r["note"]}')
        fid = r.get('int8_fidelity')
        if fid:
            lines.append(f'\n{r["label"]}: int8 vs fp32 outputs on the benchmark input: '
                         f'{_fidelity_text(fid)} (random weights: a check of the '
                         'quantized graph, not '
                         'an accuracy; the accuracy change needs trained weights and '
                         'the dataset)')
    return lines


def _fidelity_text(fid: dict) -> str:
    if fid.get('error'):
        return f'not compared ({fid["error"]})'
    parts = []
    if fid.get('max_abs_diff') is not None:
        parts.append(f'max abs diff {fid["max_abs_diff"]:.3g}' + (
            f' (output scale {fid["scale"]:.3g})' if fid.get('scale') is not None
            else ''))
    if fid.get('cosine') is not None:
        parts.append(f'cosine {fid["cosine"]:.4f}')
    if fid.get('argmax_agreement') is not None:
        parts.append(f'same label on {fid["argmax_agreement"]:.1%} of pixels')
    return ', '.join(parts) or '-'


def save_json(report: dict, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return str(path)
