"""Print our params and MAdds beside the paper's for every model-index entry that builds
a row of a paper table; exit 1 where one differs by more than the tolerance (5%).

    python tools/analysis_tools/paper_tables.py [--table 3] [--tolerance 0.05]
    python tools/analysis_tools/paper_tables.py --markdown

``--markdown`` counts nothing: it prints the table of the segmentation rows of
``configs/README.md`` (Tables 7 and 8: row, config, architecture columns) from
``mobilenet_tasks.utils.paper`` and the model index (``mobilenet_tasks.analysis.
paper_tables``), which is how that table is written;
``tests/test_tools/test_paper_tables.py`` fails where the README differs from it.
"""
import argparse
import sys

# Only argparse and the tolerance (mobilenet_tasks.analysis.paper_tables imports the
# models and the counter only to count) here, so --help and an argument error answer
# at once.
from mobilenet_tasks.analysis.paper_tables import TOLERANCE


def print_comparison(rows, tolerance: float) -> bool:
    """Print ``rows`` (:func:`compare_with_paper`) as a table; True if all are ok."""

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
    print(f'\n{len(rows)} rows, {len(bad)} outside {tolerance:.0%}'
          + (': ' + ', '.join(bad) if bad else ''))
    return not bad


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--table', help='only this table (3, 6, 7, 8)')
    parser.add_argument('--tolerance', type=float, default=TOLERANCE,
                        help='allowed relative difference (default %(default)s)')
    parser.add_argument('--markdown', action='store_true',
                        help="print configs/README.md's table of the Table 7 and 8 "
                        'rows (counts nothing)')
    args = parser.parse_args()
    from mobilenet_tasks.analysis.paper_tables import (compare_with_paper,
                                                       segmentation_rows_markdown)
    from mobilenet_tasks.utils.model_index import load_model_index
    if args.markdown:
        print(segmentation_rows_markdown(load_model_index()), end='')
        return
    entries = [e for e in load_model_index() if e.get('Paper') and (
        args.table is None or str(e['Paper']['Table']) == args.table)]
    ok = print_comparison(compare_with_paper(entries, args.tolerance), args.tolerance)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
