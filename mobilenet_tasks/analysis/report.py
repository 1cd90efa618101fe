"""The benchmark's results: the ratio rows (:data:`~.catalogue.RATIOS`) computed from
the medians of one run, the markdown tables and the JSON file."""
import json
from pathlib import Path
from typing import Dict, List, Sequence

from .catalogue import BACKEND_LABELS, BACKENDS, RATIOS


def compute_ratios(models: Dict[str, dict], threads: Sequence[int]) -> List[dict]:
    """The ratio rows (:data:`RATIOS`) from the medians of one run.

    Every spec gives a row keyed ``key`` (None values where a side was not measured,
    ``missing`` says which); a ``same_backend`` spec also gives a row keyed
    ``key:backend`` for every other backend measured on both sides. ``value`` is the
    ratio at one thread (what a target is checked on), ``values`` at every thread count.
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
    return rows


def _ratio_row(spec, models, threads, num_backend, den_backend, key, label) -> dict:
    num, den = spec['num'][0], spec['den'][0]
    values, missing = {}, []
    for name, backend in ((num, num_backend), (den, den_backend)):
        if not models.get(name, {}).get('latency_ms', {}).get(backend):
            reason = models.get(name, {}).get('skipped', {}).get(backend)
            missing.append(f'{name} {backend}' + (f' ({reason})' if reason else
                                                  ' (not measured)'))
    if not missing:
        for n in threads:
            a = models[num]['latency_ms'][num_backend].get(str(n))
            b = models[den]['latency_ms'][den_backend].get(str(n))
            values[str(n)] = round(a / b, 4) if a and b else None
    value = values.get('1')
    target = spec.get('target')
    row = dict(key=key, label=label, numerator=[num, num_backend],
               denominator=[den, den_backend], value=value, values=values,
               target=target, paper=spec.get('paper'),
               ok=None if value is None or target is None else value <= target,
               missing=missing or None)
    if spec.get('target_size') and not missing:
        size = models[num]['input_size']
        if tuple(size) != tuple(spec['target_size']):
            row['note'] = (f'measured at {size[0]}x{size[1]}; the target is at '
                           f'{spec["target_size"][0]}x{spec["target_size"][1]}')
    if spec.get('fidelity') and spec['fidelity'] in models:
        row['int8_fidelity'] = models[spec['fidelity']].get('int8_fidelity')
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
    lines += _ratio_table(report, threads)
    for warning in report.get('warnings') or []:
        lines.append(f'\n**Warning**: {warning}')
    st = report['settings']
    lines.append(f'\nWeights {st["weights"]}; int8 calibration: {st["int8_calibration"]}'
                 f'; denormals flushed: {st["denormals_flushed"]}; '
                 f'{st["warmup"]} warm-up rounds, runners interleaved. Machine: '
                 f'{report["machine"]["cpu"]}, {report["machine"]["cpu_count"]} cores, '
                 f'load average {report["machine"]["load_average_before"]} before, '
                 f'{report["machine"]["load_average_after"]} after; '
                 f'torch {report["machine"]["torch"]}, onnxruntime '
                 f'{report["machine"]["onnxruntime"]}. {report["seconds"]} s.')
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


def _ratio_table(report, threads) -> List[str]:
    lines = ['### Ratios within this run (lower = faster numerator)\n']
    head = ['ratio'] + [f'{n} thread{"s" if n > 1 else ""}' for n in threads] + [
        'target (1 thread)', 'paper']
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for r in report['ratios']:
        cells = [r['label']] + [
            '-' if r['values'].get(str(n)) is None else f'{r["values"][str(n)]:.3f}'
            for n in threads]
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
            text = (f'max abs diff {fid["max_abs_diff"]:.3g} (output scale '
                    f'{fid["scale"]:.3g}), cosine {fid["cosine"]:.4f}')
            if 'argmax_agreement' in fid:
                text += f', same label on {fid["argmax_agreement"]:.1%} of pixels'
            lines.append(f'\n{r["label"]}: int8 vs fp32 outputs on the benchmark input: '
                         f'{text} (random weights: a check of the quantized graph, not '
                         'an accuracy; the accuracy change needs trained weights and '
                         'the dataset)')
    return lines


def save_json(report: dict, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return str(path)
