"""The paper's rows, in one place (see ../shared/PAPER_TABLES.md).

Every table row a config rebuilds is written here and nowhere else: its params and MAdds
(``PAPER_TABLES``, with the input size the MAdds were counted at), accuracy
(``PAPER_ACCURACY``, ``PAPER_METRIC``), latency (``PAPER_LATENCY_MS``) and, for the
segmentation tables, its architecture columns (``TABLE7_COLUMNS``, ``TABLE8_ROWS``).
The model index points here (``Paper: {Table, Row}`` in the metafiles); the tables of
``configs/README.md`` are printed by ``tools/analysis_tools/paper_tables.py`` from this
module and the model index, and ``tests/test_tools/test_paper_tables.py`` fails where
the README or a metafile says otherwise.

Only architecture facts (params and MAdds) can be checked against our models here:
accuracy needs the real datasets and GPU-days. This module is data only (utils is the
bottom layer): counting our models is ``tools/analysis_tools/paper_tables.py``'s.
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

# The paper's accuracy of the rows our configs build (../shared/PAPER_TABLES.md):
# (table, row) -> value; PAPER_METRIC names the metric and dataset of each table.
PAPER_ACCURACY = {
    ('6', 'V1'): 22.2, ('6', 'V2'): 22.1, ('6', 'MnasNet'): 23.0, ('6', 'V3'): 22.0,
    ('6', 'V3†'): 22.0, ('6', 'V2 0.35'): 13.7, ('6', 'V2 0.5'): 16.6,
    ('6', 'MnasNet 0.35'): 15.6, ('6', 'MnasNet 0.5'): 18.5, ('6', 'V3-Small'): 16.0,
    ('6', 'V3-Small†'): 16.1,
    ('7', '1'): 72.84, ('7', '2'): 72.56, ('7', '3'): 72.97, ('7', '4'): 72.74,
    ('7', '5'): 72.64, ('7', '6'): 71.91, ('7', '7'): 72.37, ('7', '8'): 72.36,
    ('7', '9'): 68.57, ('7', '10'): 66.83, ('7', '11'): 68.38,
    ('8', 'V3 OS16'): 72.6, ('8', 'V3 OS32'): 72.0, ('8', 'V3-Small OS16'): 69.4,
    ('8', 'V3-Small OS32'): 68.3,
}
PAPER_METRIC = {'6': ('mAP', 'COCO test-dev'), '7': ('mIoU', 'Cityscapes val'),
                '8': ('mIoU', 'Cityscapes test')}
PAPER_LATENCY_MS = {  # Pixel-1 (Table 6) / Pixel-3 (Table 7 text), one core
    ('6', 'V1'): 228, ('6', 'V2'): 162, ('6', 'MnasNet'): 174, ('6', 'V3'): 137,
    ('6', 'V3†'): 119, ('6', 'V2 0.35'): 66, ('6', 'V2 0.5'): 79,
    ('6', 'MnasNet 0.35'): 68, ('6', 'MnasNet 0.5'): 85, ('6', 'V3-Small'): 52,
    ('6', 'V3-Small†'): 43, ('7', '1'): 3900, ('7', '8'): 2470,
}


def paper_figures(table: str, row: str):
    """Return ``(input_shape, params_m, madds_m)`` of a row; KeyError names the rows."""
    if table not in PAPER_TABLES:
        raise KeyError(f'no Table {table!r}; known: {sorted(PAPER_TABLES)}')
    shape, rows = PAPER_TABLES[table]
    if row not in rows:
        raise KeyError(f'Table {table} has no row {row!r}; rows: {sorted(rows)}')
    return (shape, ) + rows[row]


# Table 7's rows, named (the benchmark's labels; TABLE7_COLUMNS has their columns).
TABLE7_ROWS = {'1': 'R-ASPP V2', '2': 'R-ASPP V2 RF2', '3': 'LR-ASPP V2 F256',
               '4': 'LR-ASPP V2', '5': 'R-ASPP V3', '6': 'R-ASPP V3 RF2',
               '7': 'LR-ASPP V3 F256', '8': 'LR-ASPP V3', '9': 'LR-ASPP V2 0.5',
               '10': 'LR-ASPP V2 0.35', '11': 'LR-ASPP V3-Small'}

# Table 7's other columns: row -> (backbone, RF2, SH, F). RF2: the channels of the last
# blocks halved (the reduced tail); SH: the LR-ASPP segmentation head (without it,
# R-ASPP); F: the filters of the head.
TABLE7_COLUMNS = {
    '1': ('V2', False, False, 256),
    '2': ('V2', True, False, 256),
    '3': ('V2', True, True, 256),
    '4': ('V2', True, True, 128),
    '5': ('V3', False, False, 256),
    '6': ('V3', True, False, 256),
    '7': ('V3', True, True, 256),
    '8': ('V3', True, True, 128),
    '9': ('V2 0.5', True, True, 128),
    '10': ('V2 0.35', True, True, 128),
    '11': ('V3-Small', True, True, 128),
}
# Table 8's rows are Table 7 models on Cityscapes test at output stride 16 (atrous last
# block, as in Table 7) or 32: row -> (Table 7 row, output stride).
TABLE8_ROWS = {'V3 OS16': ('8', 16), 'V3 OS32': ('8', 32),
               'V3-Small OS16': ('11', 16), 'V3-Small OS32': ('11', 32)}
