"""Putting a generated dataset in place: reuse it, refuse to clobber, or replace it whole.

Shared by the demo generators (``demo_coco``, ``demo_cityscapes``). Standard library
only, so the dataset tools can load it without importing torch.
"""
import contextlib
import glob
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple


@contextlib.contextmanager
def lock_dir(out_dir: Path):
    """Serialise generators of the same ``out_dir`` (POSIX; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield False
        return
    with open(out_dir.parent / f'.{out_dir.name}.lock', 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_manifest(out_dir: Path, manifest_name: str) -> Optional[Dict]:
    """The manifest dict in ``out_dir``, or None if absent or unreadable."""
    try:
        with open(out_dir / manifest_name) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def publish_generated(out_dir: Path, manifest_name: str, version: int, args: Dict,
                      files_complete: Callable[[Path], bool],
                      write: Callable[[Path], Dict]) -> Tuple[Dict, bool]:
    """Reuse ``out_dir`` if complete, else write it in a temp dir and rename it in.

    A dataset is reused when its manifest has the same ``version`` and ``args`` and
    ``files_complete(out_dir)`` holds. A non-empty ``out_dir`` without a manifest is
    never replaced (FileExistsError). A failed write leaves ``out_dir`` as it was.

    Args:
        out_dir (Path): Absolute output directory.
        manifest_name (str): File name of the manifest inside the dataset.
        version (int): Generator version; a change regenerates.
        args (dict): The generator's arguments, stored in the manifest.
        files_complete (callable): ``out_dir -> bool``, whether the files are all there.
        write (callable): ``tmp_dir -> manifest``: writes the dataset into ``tmp_dir``
            and returns the manifest (written here, with ``version`` and ``args``).

    Returns:
        tuple[dict, bool]: The manifest and whether an existing dataset was reused.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with lock_dir(out_dir) as locked:
        manifest = read_manifest(out_dir, manifest_name)
        if (manifest is not None and manifest.get('version') == version
                and manifest.get('args') == args and files_complete(out_dir)):
            return manifest, True
        if out_dir.exists():
            if not out_dir.is_dir():
                raise FileExistsError(f'{out_dir} exists and is not a directory')
            if manifest is None and any(out_dir.iterdir()):
                raise FileExistsError(
                    f'{out_dir} is not empty and holds no {manifest_name}: not '
                    'replacing it with the demo dataset; choose another directory or '
                    'remove it')
        if locked:  # leftovers of an interrupted run (no other run can be writing)
            for kind in ('tmp', 'old'):
                pattern = f'.{glob.escape(out_dir.name)}.{kind}-*'
                for stale in out_dir.parent.glob(pattern):
                    shutil.rmtree(stale, ignore_errors=True)

        # not tempfile.mkdtemp: its 0700 mode would stay on the renamed dataset
        tmp = out_dir.parent / f'.{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}'
        tmp.mkdir()
        try:
            manifest = dict(write(tmp), version=version, args=args)
            with open(tmp / manifest_name, 'w') as f:
                json.dump(manifest, f, indent=2)
                f.write('\n')
            old = None
            if out_dir.exists():
                old = out_dir.parent / f'.{out_dir.name}.old-{uuid.uuid4().hex[:8]}'
                os.rename(out_dir, old)
            os.rename(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return manifest, False
