"""The paper's figures that configs are checked against (see ../shared/PAPER_TABLES.md).

Only architecture facts (params and MAdds) are checked here: accuracy needs the real
datasets and GPU-days. Each table says the input size its MAdds were counted at.
"""
# table -> (input (H, W), {row: (params in millions, MAdds in millions)})
PAPER_TABLES = {
    # Table 3: ImageNet classification at 224x224.
    '3': ((224, 224), {
        'V3-Large 1.0': (5.4, 219),
        'V3-Large 0.75': (4.0, 155),
        'MnasNet-A1': (3.9, 315),
        'V2 1.0': (3.4, 300),
        'V3-Small 1.0': (2.5, 56),
        'V3-Small 0.75': (2.0, 44),
        'V2 0.35': (1.6, 59.2),
    }),
    # Table 6: SSDLite on COCO at 320x320.
    '6': ((320, 320), {
        'V1': (5.1, 1300),
        'V2': (4.3, 800),
        'MnasNet': (4.88, 840),
        'V3': (4.97, 620),
        'V3†': (3.22, 510),
        'V2 0.35': (0.93, 160),
        'V2 0.5': (1.54, 270),
        'MnasNet 0.35': (1.02, 180),
        'MnasNet 0.5': (1.68, 290),
        'V3-Small': (2.49, 210),
        'V3-Small†': (1.77, 160),
    }),
    # Table 7: Cityscapes segmentation at 1024x2048 (rows numbered as in the paper).
    '7': ((1024, 2048), {
        '1': (2.11, 21290),
        '2': (1.15, 13680),
        '3': (1.02, 12830),
        '4': (0.98, 12570),
        '5': (3.60, 18430),
        '6': (1.76, 11240),
        '7': (1.63, 10330),
        '8': (1.51, 9740),
        '9': (0.28, 4000),
        '10': (0.16, 2540),
        '11': (0.47, 2900),
    }),
    # Table 8: Cityscapes test (MAdds at 1024x2048; params as the matching Table 7 row).
    '8': ((1024, 2048), {
        'V3 OS16': (None, 9740),
        'V3 OS32': (None, 7740),
        'V3-Small OS16': (None, 2900),
        'V3-Small OS32': (None, 2060),
    }),
}

# Relative difference allowed between our count and the paper's figure.
TOLERANCE = 0.05


def paper_figures(table: str, row: str):
    """Return ``(input_shape, params_m, madds_m)`` of a row; KeyError names the rows."""
    if table not in PAPER_TABLES:
        raise KeyError(f'no Table {table!r}; known: {sorted(PAPER_TABLES)}')
    shape, rows = PAPER_TABLES[table]
    if row not in rows:
        raise KeyError(f'Table {table} has no row {row!r}; rows: {sorted(rows)}')
    return (shape, ) + rows[row]


def compare_with_paper(entries, tolerance: float = TOLERANCE):
    """Count params and MAdds of every model-index entry that names a paper row.

    Args:
        entries (list[dict]): Model-index entries (``load_model_index()``).
        tolerance (float): Allowed relative difference.

    Returns:
        list[dict]: One row per entry with a ``Paper`` field: name, table, row, input
        shape, ours and the paper's params (M) and MAdds (M), relative differences and
        ``ok``.
    """
    from .complexity import count_complexity
    from .config import build_model

    rows = []
    for entry in entries:
        paper = entry.get('Paper')
        if not paper:
            continue
        shape, params, madds = paper_figures(str(paper['Table']), str(paper['Row']))
        ours = count_complexity(build_model(entry['Config']), shape)
        our_params, our_madds = ours['params'] / 1e6, ours['madds'] / 1e6
        d_params = None if params is None else our_params / params - 1
        d_madds = our_madds / madds - 1
        ok = abs(d_madds) <= tolerance and (d_params is None
                                            or abs(d_params) <= tolerance)
        rows.append(dict(name=entry['Name'], table=str(paper['Table']),
                         row=str(paper['Row']), shape=shape, params=our_params,
                         paper_params=params, d_params=d_params, madds=our_madds,
                         paper_madds=madds, d_madds=d_madds, ok=ok))
    return rows
