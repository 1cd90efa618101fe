"""Print our params and MAdds beside the paper's for every model-index entry that builds
a row of a paper table; exit 1 where one differs by more than the tolerance (5%).

    python tools/analysis_tools/paper_tables.py [--table 3] [--tolerance 0.05]
"""
import argparse
import sys

from mobilenet_tasks.utils.model_index import load_model_index
from mobilenet_tasks.utils.paper import TOLERANCE, compare_with_paper


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--table', help='only this table (3, 6, 7, 8)')
    parser.add_argument('--tolerance', type=float, default=TOLERANCE,
                        help='allowed relative difference (default %(default)s)')
    args = parser.parse_args()
    entries = [
        e for e in load_model_index()
        if e.get('Paper') and (args.table is None or str(e['Paper']['Table']) == args.table)
    ]
    rows = compare_with_paper(entries, args.tolerance)

    def pct(d):
        return '   -  ' if d is None else f'{d * 100:+5.1f}%'

    def num(v, fmt):
        return '-' if v is None else format(v, fmt)

    header = (f'{"config":48s} {"table":>5s} {"row":14s} {"input":>9s} '
              f'{"params M":>8s} {"paper":>6s} {"diff":>6s} '
              f'{"MAdds M":>8s} {"paper":>7s} {"diff":>6s}  ok')
    print(header)
    print('-' * len(header))
    for r in rows:
        print(f'{r["name"]:48s} {r["table"]:>5s} {r["row"]:14s} '
              f'{r["shape"][0]:>4d}x{r["shape"][1]:<4d} '
              f'{r["params"]:8.3f} {num(r["paper_params"], "6.2f"):>6s} '
              f'{pct(r["d_params"])} {r["madds"]:8.1f} {r["paper_madds"]:7.0f} '
              f'{pct(r["d_madds"])}  {"yes" if r["ok"] else "NO"}')
    bad = [r['name'] for r in rows if not r['ok']]
    print(f'\n{len(rows)} rows, {len(bad)} outside {args.tolerance:.0%}'
          + (': ' + ', '.join(bad) if bad else ''))
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
