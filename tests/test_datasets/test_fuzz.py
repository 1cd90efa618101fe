"""Fuzzing (issue 7) with hypothesis: the Cityscapes converter, the COCO validation and
the inferencer's input handling either give a valid result or a clear error naming the
input, never an exception from deep inside. Each test runs in a few seconds."""
import json
import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mobilenet_tasks.apis.inputs import InputError, read_image, to_bgr_uint8
from mobilenet_tasks.datasets.cityscapes_convert import (POLYGON_SUFFIX,
                                                         convert_json_to_label)
from mobilenet_tasks.datasets.validation import check_coco, clean_coco

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
NAME = 'aachen_000000_000019'
LABELS = ['road', 'car', 'person', 'sky', 'license plate', 'cargroup', 'unlabeled',
          'ego vehicle', 'rectification border', 'out of roi', 'static', 'dynamic']

# ---------------------------------------------------------------- Cityscapes converter
_coord = st.one_of(st.integers(-50, 100), st.floats(-50, 100, allow_nan=False))
_point = st.one_of(st.lists(_coord, min_size=2, max_size=2),
                   st.lists(_coord, max_size=3), st.none(), st.text(max_size=3))
_object = st.fixed_dictionaries(
    {'label': st.one_of(st.sampled_from(LABELS), st.text(max_size=8), st.integers()),
     'polygon': st.one_of(st.lists(_point, max_size=6),
                          st.lists(st.lists(_coord, min_size=2, max_size=2),
                                   min_size=3, max_size=6),
                          st.none(), st.integers())},
    optional={'deleted': st.sampled_from([0, 1, True, 'x']),
              'date': st.text(max_size=5)})
_size = st.one_of(st.integers(1, 40), st.sampled_from([0, -3, 'x', None, 1.5]))
_polygon_json = st.one_of(
    st.fixed_dictionaries({'imgHeight': _size, 'imgWidth': _size,
                           'objects': st.one_of(st.lists(_object, max_size=4),
                                                st.none(), st.text(max_size=3))}),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10))


def _json_text(draw_value, garbage):
    return garbage if garbage is not None else json.dumps(draw_value)


@FUZZ
@given(value=_polygon_json,
       garbage=st.one_of(st.none(), st.binary(max_size=40).map(
           lambda b: b.decode('latin-1')), st.just('{"imgHeight": 4, "imgWid')))
def test_converter_writes_train_ids_or_names_the_file(value, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        json_file = Path(tmp) / f'{NAME}{POLYGON_SUFFIX}'
        json_file.write_text(_json_text(value, garbage), encoding='latin-1')
        try:
            out = convert_json_to_label(json_file)
        except ValueError as error:  # the only error it may raise
            assert str(json_file) in str(error)
            assert not list(Path(tmp).glob('*.png'))  # nothing half-written
            return
        label = cv2.imread(out, cv2.IMREAD_UNCHANGED)
        assert label is not None and label.dtype == np.uint8 and label.ndim == 2
        assert label.shape == (value['imgHeight'], value['imgWidth'])
        values = set(np.unique(label).tolist())
        assert values <= set(range(19)) | {255}, values


# ---------------------------------------------------------------- COCO validation
FILES = {'a.jpg': (16, 24), 'b.png': (20, 20)}  # name: (height, width)
_int_id = st.integers(0, 2)
# mostly well-formed, so that the cleaning and the loading in mmdet are reached too


def _mostly(usual, rare, percent=85):
    """``usual`` in ``percent`` % of the examples, else ``rare``."""
    return st.integers(0, 99).flatmap(lambda k: usual if k < percent else rare)


_id = _mostly(_int_id, st.sampled_from(['x', None, 1.5, [1], {'a': 1}]))
_num = st.one_of(st.integers(-30, 40), st.floats(-30, 40),
                 st.sampled_from([None, '3', True, float('nan'), float('inf')]))
_odd_image = st.fixed_dictionaries(
    {'id': _id, 'file_name': st.sampled_from(['a.jpg', 'b.png', 'missing.jpg', '', 3]),
     'width': _mostly(st.sampled_from([24, 20]), _num),
     'height': _mostly(st.sampled_from([16, 20]), _num)})
_image = _mostly(st.builds(lambda i, name: dict(id=i, file_name=name,
                                                height=FILES[name][0],
                                                width=FILES[name][1]),
                           _int_id, st.sampled_from(sorted(FILES))), _odd_image, 70)
_annotation = st.fixed_dictionaries(
    {'id': _id, 'image_id': _id, 'category_id': st.one_of(st.integers(0, 4), _id),
     'bbox': _mostly(st.tuples(st.integers(0, 10), st.integers(0, 8), st.integers(1, 10),
                               st.integers(1, 8)).map(list), st.one_of(
                       st.lists(st.integers(-5, 25), min_size=4, max_size=4),
                       st.lists(_num, min_size=4, max_size=4), st.lists(_num),
                       st.none(), st.text(max_size=3)), 70),
     'area': st.just(10.0), 'iscrowd': st.sampled_from([0, 1])})
_good_category = st.fixed_dictionaries({'id': st.sampled_from([1, 2, 3]),
                                        'name': st.sampled_from(['cat', 'dog', 'bird'])})
_category = st.one_of(
    _good_category,
    st.fixed_dictionaries({'id': _id, 'name': st.text(max_size=3)}), st.integers())
_well_formed = st.fixed_dictionaries({
    'images': st.lists(_image, min_size=1, max_size=3, unique_by=lambda i: str(i['id'])),
    'annotations': st.lists(_annotation, max_size=6, unique_by=lambda a: str(a['id'])),
    'categories': st.lists(_good_category, min_size=1, max_size=3,
                           unique_by=lambda c: c['id'])})
_coco = _mostly(_well_formed, st.one_of(
    st.fixed_dictionaries({'images': st.lists(_image, max_size=4),
                           'annotations': st.lists(_annotation, max_size=6),
                           'categories': st.lists(_category, max_size=4)}),
    st.dictionaries(st.sampled_from(['images', 'annotations', 'categories']),
                    st.one_of(st.none(), st.integers(), st.lists(st.integers(),
                                                                 max_size=2))),
    st.lists(st.integers(), max_size=2)), 70)


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    from mmdet.datasets import CocoDataset  # noqa: F401 - imported outside the test
    folder = tmp_path_factory.mktemp('images')
    for name, (h, w) in FILES.items():
        cv2.imwrite(str(folder / name), np.full((h, w, 3), 128, np.uint8))
    return folder


@FUZZ
@given(data=_coco, truncate=_mostly(st.none(), st.integers(0, 200)))
def test_coco_validation_reports_faults_and_cleans_to_loadable(image_dir, data,
                                                              truncate):
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = os.path.join(tmp, 'ann.json')
        text = json.dumps(data)
        Path(ann_file).write_text(text if truncate is None else text[:truncate])
        check = check_coco(ann_file, str(image_dir), decode=True)
        for fault in check.faults:  # each names a file and says what is wrong
            assert fault.file in (ann_file, ) or fault.file.startswith(str(image_dir))
            assert isinstance(fault.fault, str) and fault.fault
        if check.data is None:  # the file is unusable as a whole
            assert check.faults and all(f.drop is None for f in check.faults)
            return
        if any(f.drop is None for f in check.faults):
            return  # malformed entries, classes: fixed by hand, not skipped
        cleaned, _, _ = clean_coco(check.data, check.faults)
        Path(ann_file).write_text(json.dumps(cleaned))
        again = check_coco(ann_file, str(image_dir), decode=True)
        assert again.faults == [], again.faults
        names = sorted({c['name'] for c in cleaned['categories']})
        if not names or not cleaned['images']:
            return
        # what passes the check loads in mmdet, with boxes inside the images
        from mmdet.datasets import CocoDataset
        try:
            dataset = CocoDataset(ann_file=ann_file, data_prefix=dict(img=str(image_dir)),
                                  metainfo=dict(classes=names), pipeline=[],
                                  test_mode=True, serialize_data=False)
        except AssertionError as e:  # mmdet asserts unique annotation ids
            assert 'not unique' in str(e)
            return
        for info in dataset.data_list:
            for inst in info['instances']:
                x1, y1, x2, y2 = inst['bbox']
                assert x2 > x1 and y2 > y1


# ---------------------------------------------------------------- inferencer inputs
_HEADERS = [b'', b'\xff\xd8\xff\xe0', b'\x89PNG\r\n\x1a\n', b'BM', b'II*\x00',
            b'RIFF\x00\x00\x00\x00WEBP']
_EXTS = ['.jpg', '.png', '.bmp', '.tif', '.webp', '.txt', '']


def _is_bgr(image):
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and \
        image.ndim == 3 and image.shape[2] == 3 and image.size > 0 and \
        image.flags['C_CONTIGUOUS']


@FUZZ
@given(header=st.sampled_from(_HEADERS), body=st.binary(max_size=200),
       ext=st.sampled_from(_EXTS))
def test_read_image_on_random_bytes(header, body, ext):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f'x{ext}')
        Path(path).write_bytes(header + body)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                image = read_image(path)
            except InputError as error:
                assert path in str(error)
                return
        assert _is_bgr(image)


@FUZZ
@given(data=st.data())
def test_read_image_on_truncated_real_images(data):
    ext = data.draw(st.sampled_from(['.jpg', '.png', '.bmp', '.tif', '.webp']))
    shape = data.draw(st.sampled_from([(5, 7), (6, 4, 3), (3, 3, 4)]))
    dtype = np.uint16 if ext in ('.png', '.tif') and data.draw(st.booleans()) else \
        np.uint8
    array = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    ok, encoded = cv2.imencode(ext, array)
    assert ok
    raw = encoded.tobytes()
    cut = data.draw(st.integers(0, len(raw)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f'x{ext}')
        Path(path).write_bytes(raw[:cut])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            try:
                image = read_image(path)
            except InputError as error:
                assert path in str(error)
                return
        assert _is_bgr(image) and image.shape[:2] == shape[:2]


_dtypes = st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64,
                           np.float16, np.float32, np.float64, np.bool_, np.complex64])
_arrays = _dtypes.flatmap(lambda dtype: hnp.arrays(
    dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))


@FUZZ
@given(array=st.one_of(_arrays, _arrays.map(lambda a: a.T),
                       st.sampled_from([None, [1, 2], 'img.jpg', 3.0])))
def test_to_bgr_uint8_on_random_arrays(array):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            image = to_bgr_uint8(array, name='fuzzed')
        except InputError as error:
            assert str(error).startswith('fuzzed: ')
            return
    assert _is_bgr(image)
    assert image.shape[:2] == array.shape[:2]
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        assert np.array_equal(image, array)
