"""Reading and normalising inference inputs: image files, folders and numpy arrays.

Every image the inferencer sees is BGR ``uint8`` ``HxWx3``, as OpenCV and mmcv's
``LoadImageFromFile`` give it. Anything else that has an unambiguous meaning
(grayscale, an alpha channel, 16-bit or float pixels) is converted with a warning that
names the input and says what was done; anything else raises :class:`InputError`.
"""
import os
import warnings
from pathlib import Path
from typing import List, Union

import cv2
import numpy as np

#: Image file extensions ``list_images`` picks up (lower case, compared case-blind).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
#: Video file extensions the inferencer hands to ``mobilenet_tasks.apis.video``.
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')

PathLike = Union[str, os.PathLike]


class InputError(ValueError):
    """A bad input: the message names the file (or array), the fault and what to do."""


def is_image_file(path: PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-blind)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_file(path: PathLike) -> bool:
    """Whether ``path`` has one of :data:`VIDEO_EXTENSIONS` (case-blind)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_images(folder: PathLike) -> List[str]:
    """The image files directly in ``folder``, sorted by name.

    Args:
        folder (str or PathLike): A directory.

    Returns:
        list[str]: Paths of the files whose extension is one of
        :data:`IMAGE_EXTENSIONS` (not recursive).

    Raises:
        InputError: If ``folder`` is missing, is not a directory, or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f'{folder}: no such folder; check the path')
    if not folder.is_dir():
        raise InputError(f'{folder}: not a folder; pass a folder of images, or the '
                         'image file itself')
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError as e:
        raise InputError(f'{folder}: cannot list the folder ({e.strerror}); check its '
                         'permissions') from e
    images = [str(p) for p in entries if is_image_file(p)]
    if not images:
        others = f' ({len(entries)} other files)' if entries else ''
        raise InputError(f'{folder}: no images in the folder{others}; images are files '
                         f'ending in {", ".join(IMAGE_EXTENSIONS)}')
    return images


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as BGR ``uint8`` ``HxWx3``.

    8-bit colour images come out exactly as mmcv's ``LoadImageFromFile`` gives them
    (OpenCV; JPEG EXIF orientation applied). Other kinds are converted as
    :func:`to_bgr_uint8` says, with a warning naming the file.

    Args:
        path (str or PathLike): An image file.

    Returns:
        np.ndarray: The image, BGR ``uint8`` ``HxWx3``.

    Raises:
        InputError: If the file is missing, unreadable, empty, not an image OpenCV can
            decode, or of a kind that cannot be converted.
    """
    name = str(path)
    if not os.path.exists(name):
        raise InputError(f'{name}: no such file; check the path')
    if os.path.isdir(name):
        raise InputError(f'{name}: is a folder; pass a folder as the whole input to '
                         'run on every image in it')
    try:
        data = np.fromfile(name, dtype=np.uint8)  # unlike cv2.imread, any file name
    except OSError as e:
        raise InputError(f'{name}: cannot read the file ({e.strerror or e}); check '
                         'its permissions') from e
    if data.size == 0:
        raise InputError(f'{name}: the file is empty; re-export or remove it')
    if data[:2].tobytes() == b'\xff\xd8':  # JPEG: never alpha; keep EXIF orientation
        flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH
    else:  # PNG, TIFF, WebP, BMP may carry alpha, which only IMREAD_UNCHANGED keeps
        flags = cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(data, flags)
    if image is None:
        raise InputError(f'{name}: not an image OpenCV can decode (corrupt, truncated '
                         'or of another format); re-export it as JPEG or PNG')
    return to_bgr_uint8(image, name=name)


def to_bgr_uint8(array: np.ndarray, name: str = 'array') -> np.ndarray:
    """Bring an image array to BGR ``uint8`` ``HxWx3``, warning about each conversion.

    - ``HxW`` or ``HxWx1`` (grayscale): channel repeated to BGR;
    - ``HxWx4`` (BGRA, as OpenCV reads it): alpha dropped;
    - ``uint16``: scaled to 8 bits (``x * 255 / 65535``, rounded), not clipped;
    - float in ``[0, 1]``: scaled by 255 and rounded.

    A BGR ``uint8`` ``HxWx3`` array is returned as it is (made C-contiguous if needed),
    without a warning.

    Args:
        array (np.ndarray): The image.
        name (str): What to call it in warnings and errors (a file name, ``'array'``).

    Returns:
        np.ndarray: BGR ``uint8`` ``HxWx3``.

    Raises:
        InputError: If ``array`` is not a numpy array, has another shape or dtype,
            is empty, or is float with values outside ``[0, 1]`` (or NaN).
    """
    if not isinstance(array, np.ndarray):
        raise InputError(f'{name}: expected a numpy image array, got '
                         f'{type(array).__name__}')
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8 \
            and array.size:
        return np.ascontiguousarray(array)  # the common case, nothing to say
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise InputError(f'{name}: an image must be HxW, HxWx1, HxWx3 or HxWx4; got '
                         f'shape {array.shape}')
    if array.size == 0:
        raise InputError(f'{name}: the image is empty (shape {array.shape})')
    done = []
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = np.rint(array.astype(np.float32) * (255 / 65535)).astype(np.uint8)
        done.append('16-bit pixels scaled to 8 bits')
    elif np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also False for NaN
            raise InputError(f'{name}: float images must hold values in [0, 1]; got '
                             f'[{low:g}, {high:g}]; scale it or convert to uint8')
        array = np.rint(array.astype(np.float32) * 255).astype(np.uint8)
        done.append('float pixels in [0, 1] scaled to uint8')
    else:
        raise InputError(f'{name}: pixels must be uint8, uint16 or float in [0, 1]; got '
                         f'{array.dtype}')
    if array.ndim == 2 or array.shape[2] == 1:
        array = cv2.cvtColor(array.reshape(array.shape[:2]), cv2.COLOR_GRAY2BGR)
        done.append('grayscale converted to BGR')
    elif array.shape[2] == 4:
        array = np.ascontiguousarray(array[:, :, :3])
        done.append('alpha channel dropped (BGRA to BGR)')
    if done:
        warnings.warn(f'{name}: {"; ".join(done)}', stacklevel=2)
    return np.ascontiguousarray(array)
