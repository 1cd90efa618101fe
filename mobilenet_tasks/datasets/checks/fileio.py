"""Reading data files cheaply (is it an image?) and writing cleaned copies safely."""
import os
from typing import Optional, Tuple

import numpy as np

__all__ = ['image_file_fault', 'write_replacing']

_MAGIC = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'BM', b'II*\x00', b'MM\x00*', b'GIF8')


def image_file_fault(path: str, decode: bool, flags: Optional[int] = None,
                     ) -> Tuple[Optional[str], Optional[np.ndarray]]:
    """``(fault, decoded image)`` of an image file; fault None when it is fine.

    Without ``decode`` only the first 16 bytes are read (a known image header); with it
    the file is decoded by OpenCV (``flags``: ``cv2.imdecode``'s, default unchanged).
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return 'file does not exist', None
    except OSError as e:
        return f'cannot read the file ({e.strerror or e})', None
    if size == 0:
        return 'file is empty (0 bytes)', None
    try:
        if not decode:
            with open(path, 'rb') as f:
                head = f.read(16)
            if not (head.startswith(_MAGIC) or head[8:12] == b'WEBP'):
                return ('not an image file (its first bytes are no JPEG, PNG, BMP, '
                        'TIFF, GIF or WebP header)'), None
            return None, None
        import cv2  # only when decoding: header checks need no OpenCV
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        return f'cannot read the file ({e.strerror or e})', None
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED if flags is None else flags)
    if image is None:
        return 'corrupt image: OpenCV cannot decode it (truncated or not an image)', None
    return None, image


def write_replacing(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a file of this process, renamed into place:
    in a distributed run every process cleans the same data and writes the same file,
    and none may read another's half-written copy."""
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
    os.replace(tmp, path)
