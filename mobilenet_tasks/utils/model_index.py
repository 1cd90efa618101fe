"""Reading ``model-index.yml`` and the ``metafile.yml`` files it lists (OpenMMLab format)."""
from pathlib import Path
from typing import Dict, List

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_model_index(root: Path = ROOT) -> List[Dict]:
    """Return every model entry of the model index, each with ``Config`` resolved.

    Args:
        root (Path): The checkout that holds ``model-index.yml``.

    Returns:
        list[dict]: The ``Models`` entries of every imported metafile, in order, with
        ``Config`` as an absolute path and ``Metafile`` naming the file they came from.
    """
    index_path = Path(root) / 'model-index.yml'
    if not index_path.is_file():
        raise FileNotFoundError(f'{index_path} not found: run from a mobilenet_tasks '
                                'checkout (the model index is not installed with pip)')
    index = yaml.safe_load(index_path.read_text())
    entries = []
    for metafile in index.get('Import', []):
        path = Path(root) / metafile
        for model in (yaml.safe_load(path.read_text()) or {}).get('Models', []):
            model = dict(model)
            model['Config'] = str(Path(root) / model['Config'])
            model['Metafile'] = str(path)
            entries.append(model)
    return entries


def find_entry(config_path: str, root: Path = ROOT):
    """The model-index entry whose ``Config`` is ``config_path``, or None."""
    target = Path(config_path).resolve()
    for entry in load_model_index(root):
        if Path(entry['Config']).resolve() == target:
            return entry
    return None
