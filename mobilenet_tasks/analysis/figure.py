"""Accuracy against latency, after Figure 1 of "Searching for MobileNetV3", for the
models of one benchmark report: each model at its latency on its fastest runtime here
(the report's ``fastest``), or on one backend if asked."""
from pathlib import Path
from typing import Optional

from .catalogue import BACKEND_LABELS
from .report import fastest


def _point(m: dict, backend: Optional[str], threads: int):
    """``(latency ms, backend)`` of a model on ``backend`` (None: its fastest)."""
    if backend is None:
        best = (m.get('fastest') or fastest(m)).get(str(threads))
        return (best['ms'], best['backend']) if best else (None, None)
    return m['latency_ms'].get(backend, {}).get(str(threads)), backend


def plot_figure1(report: dict, path, backend: Optional[str] = None,
                 threads: int = 1) -> str:
    """Accuracy against latency (the paper's Figure 1, for the models measured): one
    panel a task; ours at the paper's accuracy, peers at their published accuracy;
    each model at its latency on its fastest runtime at ``threads`` (``backend``: on
    that backend for all), the runtime named in its label."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    tasks = [t for t in ('detection', 'segmentation')
             if any(m['task'] == t for m in report['models'])]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 5.2),
                             squeeze=False)
    style = {'ours': ('o', 'C0', 'ours (accuracy: the paper\'s)'),
             'mmdet': ('s', 'C1', 'mmdet (published accuracy)'),
             'mmseg': ('^', 'C2', 'mmseg (published accuracy)'),
             'torchvision': ('D', 'C3', 'torchvision (published accuracy)')}
    for ax, task in zip(axes[0], tasks):
        rows = [m for m in report['models'] if m['task'] == task]
        size = rows[0]['input_size']
        left_out, labelled, xmax = [], set(), 0.0
        for m in rows:
            latency, on = _point(m, backend, threads)
            if latency is None or not m['accuracy']:
                left_out.append(m['short'])
                continue
            marker, color, label = style[m['source']]
            ax.scatter(latency, m['accuracy']['value'], marker=marker, color=color,
                       s=48, label=None if m['source'] in labelled else label, zorder=3)
            labelled.add(m['source'])
            xmax = max(xmax, latency)
            ax.annotate(m['short'] + ('' if backend else f' [{on}]'),
                        (latency, m['accuracy']['value']),
                        textcoords='offset points', xytext=(5, 4), fontsize=8)
        ours = [m for m in rows if m['source'] == 'ours' and m['accuracy']]
        metric = 'mAP' if task == 'detection' else 'mIoU'
        datasets = sorted({m['accuracy']['dataset'] for m in ours})
        ax.set_ylabel(f'{metric} (%)')
        where = BACKEND_LABELS[backend] if backend else \
            "each model's fastest runtime [in brackets]"
        ax.set_xlabel(f'latency (ms) measured here, {threads} thread'
                      f'{"s" if threads > 1 else ""}, {size[0]}x{size[1]},\n'
                      f'on {where}', fontsize=9)
        ax.set_title(f'{task}: ours at the paper\'s {metric} '
                     f'({", ".join(datasets) or "-"}), peers at their published one',
                     fontsize=9)
        ax.margins(y=0.15)
        ax.set_xlim(0, 1.3 * xmax or 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='best')
        if left_out:
            ax.text(0.01, 0.01, 'not plotted (no accuracy or latency): '
                    + ', '.join(left_out), transform=ax.transAxes, fontsize=7,
                    va='bottom')
    fig.suptitle('Accuracy vs latency, after Figure 1 of "Searching for MobileNetV3", '
                 + ('on each model\'s fastest runtime' if backend is None else
                    f'on {BACKEND_LABELS[backend]}')
                 + f'\n({report["machine"]["cpu"]}, random weights for latency; '
                 'accuracy not measured here)', fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
