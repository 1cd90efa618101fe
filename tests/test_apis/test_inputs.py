"""Reading and normalising inference inputs: every bad or unusual image, named."""
import os
import warnings

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mobilenet_tasks.apis import InputError, list_images, read_image, to_bgr_uint8


def _colour_image(h=24, w=32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        yield


def test_colour_files_read_as_opencv_reads_them(tmp_path, no_warnings):
    image = _colour_image()
    for ext in ('.png', '.jpg', '.bmp', '.tiff', '.webp'):
        path = str(tmp_path / f'a{ext}')
        assert cv2.imwrite(path, image)
        np.testing.assert_array_equal(read_image(path), cv2.imread(path))
    assert read_image(tmp_path / 'a.png').flags['C_CONTIGUOUS']  # PathLike works


def test_missing_folder_empty_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match=r'nothere\.jpg: no such file'):
        read_image(tmp_path / 'nothere.jpg')
    with pytest.raises(InputError, match='is a folder'):
        read_image(tmp_path)
    (tmp_path / 'empty.png').write_bytes(b'')
    with pytest.raises(InputError, match=r'empty\.png: the file is empty'):
        read_image(tmp_path / 'empty.png')
    (tmp_path / 'bad.jpg').write_bytes(b'\xff\xd8 this is not really a jpeg' * 10)
    with pytest.raises(InputError, match=r'bad\.jpg: not an image OpenCV can decode'):
        read_image(tmp_path / 'bad.jpg')
    (tmp_path / 'text.png').write_text('hello')
    with pytest.raises(InputError, match=r'text\.png: not an image'):
        read_image(tmp_path / 'text.png')


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / 'locked.png'
    cv2.imwrite(str(path), _colour_image())
    if hasattr(os, 'geteuid') and os.geteuid() == 0:  # root reads it anyway: refuse
        def refuse(*args, **kwargs):
            raise PermissionError(13, 'Permission denied')
        monkeypatch.setattr(np, 'fromfile', refuse)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match=r'locked\.png: cannot read the file '
                           r'\(Permission denied\); check its permissions'):
            read_image(path)
    finally:
        path.chmod(0o644)


def test_grayscale_rgba_and_16_bit_files_are_converted_with_a_warning(tmp_path):
    image = _colour_image()
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / 'gray.png'), gray)
    with pytest.warns(UserWarning, match=r'gray\.png: grayscale converted to BGR'):
        out = read_image(tmp_path / 'gray.png')
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert (out == gray[..., None]).all()

    bgra = np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / 'rgba.png'), bgra)
    with pytest.warns(UserWarning, match=r'rgba\.png: alpha channel dropped'):
        out = read_image(tmp_path / 'rgba.png')
    np.testing.assert_array_equal(out, image)

    deep = np.zeros((4, 5, 3), np.uint16)
    deep[0, 0], deep[0, 1], deep[0, 2] = 65535, 32768, 257  # -> 255, 128, 1
    cv2.imwrite(str(tmp_path / 'deep.png'), deep)
    with pytest.warns(UserWarning, match=r'deep\.png: 16-bit pixels scaled to 8 bits'):
        out = read_image(tmp_path / 'deep.png')
    assert out.dtype == np.uint8
    assert out[0, :3, 0].tolist() == [255, 128, 1]  # scaled, not clipped

    cv2.imwrite(str(tmp_path / 'deep_gray.png'), deep[..., 0])
    with pytest.warns(UserWarning, match='16-bit pixels scaled to 8 bits; grayscale'):
        assert read_image(tmp_path / 'deep_gray.png').shape == (4, 5, 3)


def test_to_bgr_uint8_conversions():
    image = _colour_image()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert to_bgr_uint8(image) is not None
        flipped = to_bgr_uint8(image[:, ::-1])  # non-contiguous view: no warning
    assert flipped.flags['C_CONTIGUOUS']
    np.testing.assert_array_equal(flipped, image[:, ::-1])
    with pytest.warns(UserWarning, match='frame: grayscale converted to BGR'):
        assert to_bgr_uint8(image[..., :1], name='frame').shape == (24, 32, 3)
    with pytest.warns(UserWarning, match='float pixels in \\[0, 1\\] scaled to uint8'):
        out = to_bgr_uint8(np.array([[[0.0, 0.5, 1.0]]], np.float32))
    assert out.tolist() == [[[0, 128, 255]]]


@pytest.mark.parametrize('bad, match', [
    (np.zeros((4, 4, 2), np.uint8), 'shape \\(4, 4, 2\\)'),
    (np.zeros((2, 4, 4, 3), np.uint8), 'shape \\(2, 4, 4, 3\\)'),
    (np.zeros((0, 4, 3), np.uint8), 'empty'),
    (np.zeros((4, 4, 3), np.int32), 'got int32'),
    (np.zeros((4, 4, 3), bool), 'got bool'),
    (np.full((4, 4, 3), 2.0), '\\[2, 2\\]'),
    (np.full((4, 4), np.nan), 'in \\[0, 1\\]'),
    ([[1, 2], [3, 4]], 'got list'),
])
def test_to_bgr_uint8_rejects(bad, match):
    with pytest.raises(InputError, match=f'img7: .*{match}'):
        to_bgr_uint8(bad, name='img7')


_SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)


@settings(max_examples=30, deadline=None)
@given(st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.int16, np.float64]), _SHAPES),
    hnp.arrays(np.float32, _SHAPES, elements=st.floats(0, 1, width=32))))
def test_to_bgr_uint8_fuzz(array):
    """Either a BGR uint8 image of the same height and width, or an InputError."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            out = to_bgr_uint8(array)
        except InputError:
            return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape[:2] == array.shape[:2] and out.flags['C_CONTIGUOUS']


def test_list_images(tmp_path):
    image = _colour_image()
    for name in ('b.png', 'a.JPG', 'c.webp', 'notes.txt', 'd.tif'):
        if name.endswith('.txt'):
            (tmp_path / name).write_text('x')
        else:
            cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / 'sub').mkdir()
    cv2.imwrite(str(tmp_path / 'sub' / 'e.png'), image)  # not recursive
    names = [os.path.basename(p) for p in list_images(tmp_path)]
    assert names == ['a.JPG', 'b.png', 'c.webp', 'd.tif']


def test_list_images_errors(tmp_path):
    with pytest.raises(InputError, match=r'missing: no such folder'):
        list_images(tmp_path / 'missing')
    with pytest.raises(InputError, match='no images in the folder;'):
        list_images(tmp_path)
    (tmp_path / 'notes.txt').write_text('x')
    with pytest.raises(InputError, match=r'no images in the folder \(1 other files\)'):
        list_images(tmp_path)
    with pytest.raises(InputError, match='not a folder'):
        list_images(tmp_path / 'notes.txt')
