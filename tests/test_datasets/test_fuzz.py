"""Fuzzing (issue 7) with hypothesis: the Cityscapes converter, the COCO validation and
the inferencer's input handling either give a valid result or a clear error naming the
input, never an exception from deep inside. Each test also draws inputs whose outcome
is known (valid ones, whose result it predicts exactly, and ones with a documented
fault), with explicit examples of each, so that code which always raises, or never
does, fails it. Each test runs in a few seconds."""
import json
import os
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mobilenet_tasks.apis.inputs import InputError, read_image, to_bgr_uint8
from mobilenet_tasks.datasets.cityscapes_convert import (POLYGON_SUFFIX,
                                                         convert_json_to_label)
from mobilenet_tasks.datasets.checks import check_coco, clean_coco

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


# Valid files: rectangles of labels whose trainId (the Cityscapes label table) is known,
# so that the map cityscapesscripts draws can be predicted pixel by pixel.
TRAIN_IDS = {'road': 0, 'sky': 10, 'person': 11, 'car': 13, 'cargroup': 13,
             'unlabeled': 255, 'ego vehicle': 255, 'static': 255, 'dynamic': 255,
             'license plate': None}  # license plate: id -1, never drawn


@st.composite
def _valid_polygon_json(draw):
    """``(json value, expected label map)`` of a well-formed polygon file: each object a
    rectangle (corners inclusive, drawn in order, the later on top; deleted ones
    skipped), unlabelled pixels 255."""
    height, width = draw(st.integers(1, 30)), draw(st.integers(1, 30))
    expected = np.full((height, width), 255, np.uint8)
    objects = []
    for _ in range(draw(st.integers(0, 4))):
        x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        x1, y1 = draw(st.integers(x0, width - 1)), draw(st.integers(y0, height - 1))
        label = draw(st.sampled_from(sorted(TRAIN_IDS)))
        obj = dict(label=label, polygon=[[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        if draw(st.booleans()):
            obj['deleted'] = draw(st.sampled_from([0, 1]))
        objects.append(obj)
        if not obj.get('deleted') and TRAIN_IDS[label] is not None:
            expected[y0:y1 + 1, x0:x1 + 1] = TRAIN_IDS[label]
    return dict(imgHeight=height, imgWidth=width, objects=objects), expected


# Invalid files, each for a reason the docstring of convert_json_to_label names.
_invalid_text = st.one_of(
    st.just(''), st.just('{"imgHeight": 4, "imgWid'), st.just('[1, 2]'),
    st.builds(lambda h, w: json.dumps(dict(imgHeight=h, imgWidth=w, objects=[])),
              st.sampled_from([0, -3, 'x', None, 1.5, True]), st.integers(1, 9)),
    st.just(json.dumps(dict(imgHeight=4, imgWidth=4, objects=None))),
    st.builds(lambda obj: json.dumps(dict(imgHeight=4, imgWidth=4, objects=[obj])),
              st.sampled_from([
                  dict(polygon=[[0, 0], [1, 0], [1, 1]]),  # no label
                  dict(label=3, polygon=[[0, 0], [1, 0], [1, 1]]),
                  dict(label='car', polygon=[]),
                  dict(label='car', polygon=[[0, 0], [1]]),
                  dict(label='car', polygon=[[0, 0], [1, 'x']]),
                  dict(label='car', polygon=None),
                  dict(label='no such label', polygon=[[0, 0], [1, 0], [1, 1]])])))


def _convert(text):
    """``(label map or None, error or None)`` of a polygon file of ``text``; asserts
    that a ValueError names the file and leaves no PNG behind."""
    with tempfile.TemporaryDirectory() as tmp:
        json_file = Path(tmp) / f'{NAME}{POLYGON_SUFFIX}'
        json_file.write_text(text, encoding='latin-1')
        try:
            out = convert_json_to_label(json_file)
        except ValueError as error:  # the only error it may raise
            assert str(json_file) in str(error)
            assert not list(Path(tmp).glob('*.png'))  # nothing half-written
            return None, error
        label = cv2.imread(out, cv2.IMREAD_UNCHANGED)
        assert label is not None and label.dtype == np.uint8 and label.ndim == 2
        return label, None


@FUZZ
@given(case=st.one_of(
    _valid_polygon_json().map(lambda v: ('valid', json.dumps(v[0]), v[1])),
    _invalid_text.map(lambda text: ('invalid', text, None)),
    # anything: a label map or the error, nothing else
    _polygon_json.map(lambda value: ('any', json.dumps(value), None)),
    st.binary(max_size=40).map(lambda b: ('any', b.decode('latin-1'), None))))
@example(case=('valid', json.dumps(dict(imgHeight=3, imgWidth=4, objects=[
    dict(label='road', polygon=[[0, 0], [3, 0], [3, 2], [0, 2]]),
    dict(label='car', polygon=[[1, 1], [2, 1], [2, 1], [1, 1]])])),
    np.array([[0, 0, 0, 0], [0, 13, 13, 0], [0, 0, 0, 0]], np.uint8)))
@example(case=('invalid', '{"imgHeight": 4, "imgWid', None))
def test_converter_writes_train_ids_or_names_the_file(case):
    """Valid files: the label map, pixel for pixel; invalid ones: ValueError naming the
    file; anything else: one or the other."""
    kind, text, expected = case
    label, error = _convert(text)
    if kind == 'valid':
        assert error is None, f'a valid polygon file was refused: {error}'
        np.testing.assert_array_equal(label, expected)
    elif kind == 'invalid':
        assert error is not None, 'an invalid polygon file was converted'
    elif error is None:
        value = json.loads(text)
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


# Valid files: ids unique, boxes inside their images, names sorted as the ids (mmdet
# numbers the classes in the json's category order)
CATEGORIES = [dict(id=1, name='bird'), dict(id=2, name='cat'), dict(id=3, name='dog')]


@st.composite
def _valid_coco(draw):
    """A COCO json check_coco must accept as it is, with what mmdet must load of it:
    ``(data, {image id: [(x1, y1, x2, y2, label, ignore_flag), ...]})``."""
    categories = sorted(draw(st.lists(st.sampled_from(CATEGORIES), min_size=1,
                                      max_size=3, unique_by=lambda c: c['id'])),
                        key=lambda c: c['id'])
    image_ids = draw(st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True))
    images = [dict(id=i, file_name=name, height=FILES[name][0], width=FILES[name][1])
              for i, name in zip(image_ids, draw(st.lists(
                  st.sampled_from(sorted(FILES)), min_size=len(image_ids),
                  max_size=len(image_ids))))]
    annotations, expected = [], {i: [] for i in image_ids}
    ann_ids = draw(st.lists(st.integers(0, 99), max_size=6, unique=True))
    for ann_id in ann_ids:
        image = draw(st.sampled_from(images))
        label = draw(st.integers(0, len(categories) - 1))
        x, y = draw(st.integers(0, image['width'] - 1)), draw(
            st.integers(0, image['height'] - 1))
        w, h = draw(st.integers(1, image['width'] - x)), draw(
            st.integers(1, image['height'] - y))
        crowd = draw(st.sampled_from([0, 1]))
        annotations.append(dict(id=ann_id, image_id=image['id'],
                                category_id=categories[label]['id'],
                                bbox=[x, y, w, h], area=float(w * h), iscrowd=crowd))
        expected[image['id']].append((x, y, x + w, y + h, label, crowd))
    return dict(images=images, annotations=annotations,
                categories=categories), expected


FAULT_KINDS = ('missing file', 'wrong size', 'empty box', 'box outside',
               'unknown image', 'unknown category')


def _with_fault(data, kind, index=0, field=2):
    """``(data with one fault planted, what its Fault must say to drop)``: in the
    ``index``-th image or annotation; ``field``: the box's 2 (width) or 3 (height)."""
    data = json.loads(json.dumps(data))  # a copy to change
    if kind in ('missing file', 'wrong size'):
        image = data['images'][index % len(data['images'])]
        if kind == 'missing file':
            image['file_name'] = 'missing.jpg'
        else:
            image['width'] += 1  # the boxes stay inside
        return data, ('image', image['id'])
    ann = data['annotations'][index % len(data['annotations'])]
    if kind == 'empty box':
        ann['bbox'][field] = 0
    elif kind == 'box outside':
        ann['bbox'][0] = 30  # the images are at most 24 wide
    elif kind == 'unknown image':
        ann['image_id'] = 100  # ids are 0..99
    else:
        ann['category_id'] = 4
    return data, ('annotation', ann['id'])


@st.composite
def _coco_with_one_fault(draw):
    data, _ = draw(_valid_coco())
    kinds = FAULT_KINDS if data['annotations'] else FAULT_KINDS[:2]
    return _with_fault(data, draw(st.sampled_from(kinds)), draw(st.integers(0, 5)),
                       draw(st.sampled_from([2, 3])))


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    from mmdet.datasets import CocoDataset  # noqa: F401 - imported outside the test
    folder = tmp_path_factory.mktemp('images')
    for name, (h, w) in FILES.items():
        cv2.imwrite(str(folder / name), np.full((h, w, 3), 128, np.uint8))
    return folder


def _load_in_mmdet(ann_file, image_dir, names):
    """``{image id: [(x1, y1, x2, y2, label, ignore_flag), ...]}`` as mmdet loads it."""
    from mmdet.datasets import CocoDataset
    dataset = CocoDataset(ann_file=ann_file, data_prefix=dict(img=str(image_dir)),
                          metainfo=dict(classes=names), pipeline=[], test_mode=True,
                          serialize_data=False)
    return {info['img_id']: [(*inst['bbox'], inst['bbox_label'], inst['ignore_flag'])
                             for inst in info['instances']]
            for info in dataset.data_list}


_VALID_EXAMPLE = (dict(images=[dict(id=0, file_name='a.jpg', height=16, width=24)],
                       annotations=[dict(id=0, image_id=0, category_id=1,
                                         bbox=[2, 3, 5, 4], area=20.0, iscrowd=0)],
                       categories=[CATEGORIES[0]]), {0: [(2, 3, 7, 7, 0, 0)]})
# each fault in that file, every run
_FAULTY = {kind: ('one fault', ) + _with_fault(_VALID_EXAMPLE[0], kind)
           for kind in FAULT_KINDS}


@FUZZ
@given(case=st.one_of(
    _valid_coco().map(lambda v: ('valid', ) + v),
    _coco_with_one_fault().map(lambda v: ('one fault', ) + v),
    _coco.map(lambda data: ('any', data, None))),
    truncate=_mostly(st.none(), st.integers(0, 200)))
@example(case=('valid', ) + _VALID_EXAMPLE, truncate=None)
@example(case=('valid', ) + _VALID_EXAMPLE, truncate=50)
@example(case=_FAULTY['missing file'], truncate=None)
@example(case=_FAULTY['wrong size'], truncate=None)
@example(case=_FAULTY['empty box'], truncate=None)
@example(case=_FAULTY['box outside'], truncate=None)
@example(case=_FAULTY['unknown image'], truncate=None)
@example(case=_FAULTY['unknown category'], truncate=None)
def test_coco_validation_reports_faults_and_cleans_to_loadable(image_dir, case,
                                                              truncate):
    """A valid json passes as it is and loads in mmdet box for box; one with a planted
    fault gives that fault alone, and cleans to a valid one; a truncated one is
    reported unusable; anything else: faults that name the file, and what is left
    after cleaning passes and loads."""
    kind, data, expected = case
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = os.path.join(tmp, 'ann.json')
        text = json.dumps(data)
        truncated = truncate is not None and truncate < len(text)
        Path(ann_file).write_text(text[:truncate] if truncated else text)
        check = check_coco(ann_file, str(image_dir), decode=True)
        for fault in check.faults:  # each names a file and says what is wrong
            assert fault.file in (ann_file, ) or fault.file.startswith(str(image_dir))
            assert isinstance(fault.fault, str) and fault.fault
        if truncated:  # a proper prefix of a JSON text is no JSON text
            assert check.data is None
            assert [f.file for f in check.faults] == [ann_file], check.faults
        elif kind == 'valid':
            assert check.faults == [], check.faults
            assert check.data == data
        elif kind == 'one fault':
            assert [f.drop for f in check.faults] == [expected], check.faults
        if check.data is None:  # the file is unusable as a whole
            assert check.faults and all(f.drop is None for f in check.faults)
            return
        if any(f.drop is None for f in check.faults):
            return  # malformed entries, classes: fixed by hand, not skipped
        cleaned, dropped_images, dropped_anns = clean_coco(check.data, check.faults)
        if kind == 'valid':
            assert cleaned == data and dropped_images == dropped_anns == 0
        elif kind == 'one fault':  # that item is gone (an image with its boxes)
            what, item = expected
            kept = [i['id'] for i in cleaned[f'{what}s']]
            assert item not in kept
            assert len(kept) == len(data[f'{what}s']) - 1
        Path(ann_file).write_text(json.dumps(cleaned))
        again = check_coco(ann_file, str(image_dir), decode=True)
        assert again.faults == [], again.faults
        names = sorted({c['name'] for c in cleaned['categories']})
        if not names or not cleaned['images']:
            return
        # what passes the check loads in mmdet, with boxes inside the images
        try:
            loaded = _load_in_mmdet(ann_file, image_dir, names)
        except AssertionError as e:  # mmdet asserts unique annotation ids
            assert kind == 'any' and 'not unique' in str(e)
            return
        if kind == 'valid':  # every box, as the json has it
            assert loaded == expected
        for boxes in loaded.values():
            for x1, y1, x2, y2, _, _ in boxes:
                assert x2 > x1 and y2 > y1


# ---------------------------------------------------------------- inferencer inputs
_HEADERS = [b'', b'\xff\xd8\xff\xe0', b'\x89PNG\r\n\x1a\n', b'BM', b'II*\x00',
            b'RIFF\x00\x00\x00\x00WEBP']
_EXTS = ['.jpg', '.png', '.bmp', '.tif', '.webp', '.txt', '']


def _is_bgr(image):
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and \
        image.ndim == 3 and image.shape[2] == 3 and image.size > 0 and \
        image.flags['C_CONTIGUOUS']


# float pixels: rint(float32(x) * 255); float32 rounding moves 255 * x by < 3e-5 before
# it is rounded, so the result is within 0.5 + 3e-5 of 255 * x (bound: 1e-4)
FLOAT_PIXEL_SLACK = 0.5 + 1e-4


def _expected_bgr(array):
    """``(BGR float64 array, tolerance)`` that ``to_bgr_uint8(array)`` must return, as
    its docstring states the conversions, or None where it must raise InputError."""
    if not isinstance(array, np.ndarray) or array.ndim not in (2, 3) or \
            array.size == 0 or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        return None
    tolerance = 0.0
    if array.dtype == np.uint8:
        pixels = array.astype(np.float64)
    elif array.dtype == np.uint16:  # x * 255 / 65535 is never k + 1/2: exact
        pixels = np.rint(array.astype(np.float64) * 255 / 65535)
    elif np.issubdtype(array.dtype, np.floating):
        low, high = float(np.min(array)), float(np.max(array))
        if not (0.0 <= low and high <= 1.0):  # also NaN
            return None
        pixels, tolerance = array.astype(np.float64) * 255, FLOAT_PIXEL_SLACK
    else:  # bool, signed integers, complex
        return None
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return pixels[:, :, :3], tolerance


def _assert_converted(image, array):
    expected, tolerance = _expected_bgr(array)
    assert _is_bgr(image), (type(image), getattr(image, 'shape', None))
    assert image.shape == expected.shape, (image.shape, expected.shape)
    diff = np.abs(image.astype(np.float64) - expected).max()
    assert diff <= tolerance, (diff, tolerance)


# lossless encodings (WebP: OpenCV's default quality is lossless), decoded exactly
_LOSSLESS = ['.png', '.bmp', '.tif', '.webp']
_bgr_images = hnp.arrays(np.uint8, st.tuples(st.integers(1, 6), st.integers(1, 6),
                                             st.just(3)))


def _encoded(ext, array):
    ok, encoded = cv2.imencode(ext, array)
    assert ok
    return encoded.tobytes()


def _read(path, content):
    """``read_image`` of a file of ``content``: the image, or the InputError (which
    must name the file)."""
    Path(path).write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            return read_image(path), None
        except InputError as error:
            assert path in str(error)
            return None, error


@FUZZ
@given(case=st.one_of(
    st.tuples(st.just('any'), st.sampled_from(_HEADERS), st.binary(max_size=200)),
    st.tuples(st.just('empty'), st.just(b''), st.just(b'')),
    # a whole image file, whatever its name says: read by its content, exactly
    st.tuples(st.just('image'), st.sampled_from(_LOSSLESS), _bgr_images)),
    ext=st.sampled_from(_EXTS))
@example(case=('image', '.png', np.arange(18, dtype=np.uint8).reshape(2, 3, 3)),
         ext='.png')
@example(case=('empty', b'', b''), ext='.jpg')
def test_read_image_on_random_bytes(case, ext):
    kind, first, second = case
    content = _encoded(first, second) if kind == 'image' else first + second
    with tempfile.TemporaryDirectory() as tmp:
        image, error = _read(os.path.join(tmp, f'x{ext}'), content)
    if kind == 'image':
        assert error is None, f'a whole {first} file was refused: {error}'
        assert np.array_equal(image, second)
    elif kind == 'empty':
        assert error is not None and 'empty' in str(error), (image, error)
    elif error is None:
        assert _is_bgr(image)


@FUZZ
@given(data=st.data())
@example(data=None)  # every run: a whole PNG, read exactly
def test_read_image_on_truncated_real_images(data):
    if data is None:
        ext, shape, dtype, cut = '.png', (6, 4, 3), np.uint8, None
    else:
        ext = data.draw(st.sampled_from(['.jpg', '.png', '.bmp', '.tif', '.webp']))
        shape = data.draw(st.sampled_from([(5, 7), (6, 4, 3), (3, 3, 4)]))
        dtype = np.uint16 if ext in ('.png', '.tif') and data.draw(st.booleans()) else \
            np.uint8
    array = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    if dtype == np.uint16:
        array = array * 1000 + 500  # more than one 8-bit level
    raw = _encoded(ext, array)
    if data is not None:  # the whole file as often as a cut one
        cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    content = raw if cut is None else raw[:cut]
    with tempfile.TemporaryDirectory() as tmp:
        image, error = _read(os.path.join(tmp, f'x{ext}'), content)
    if len(content) == 0:
        assert error is not None and 'empty' in str(error)
    elif len(content) == len(raw):
        assert error is None, f'a whole {ext} file was refused: {error}'
        if ext == '.jpg':
            assert _is_bgr(image) and image.shape[:2] == shape[:2]
        else:
            _assert_converted(image, array)
    elif error is None:
        assert _is_bgr(image) and image.shape[:2] == shape[:2]


_dtypes = st.sampled_from([np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64,
                           np.float16, np.float32, np.float64, np.bool_, np.complex64])
_arrays = _dtypes.flatmap(lambda dtype: hnp.arrays(
    dtype, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
# images of every kind that is converted (random arrays rarely are: floats in [0, 1])
_shapes = st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, max_side=5),
                    st.tuples(st.integers(1, 5), st.integers(1, 5),
                              st.sampled_from([1, 3, 4])))
_images = st.one_of(
    st.sampled_from([np.uint8, np.uint16]).flatmap(
        lambda dtype: hnp.arrays(dtype, _shapes)),
    st.sampled_from([np.float16, np.float32, np.float64]).flatmap(
        lambda dtype: hnp.arrays(dtype, _shapes, elements=st.floats(0, 1, width=16))))


@FUZZ
@given(array=st.one_of(_arrays, _arrays.map(lambda a: a.T), _images,
                       _images.map(lambda a: a[::-1, ::2]),  # not contiguous
                       st.sampled_from([None, [1, 2], 'img.jpg', 3.0])))
@example(array=np.arange(24, dtype=np.uint8).reshape(2, 4, 3))
@example(array=np.arange(8, dtype=np.uint8).reshape(2, 4))  # grayscale
@example(array=np.arange(8, dtype=np.uint8).reshape(2, 4, 1))
@example(array=np.arange(32, dtype=np.uint8).reshape(2, 4, 4))  # BGRA
@example(array=np.array([[0, 128, 129, 200, 40000, 65535]], np.uint16))
@example(array=np.array([[0, 0.25, 0.5, 0.999, 1]], np.float32))
@example(array=np.zeros((2, 3, 2), np.uint8))
@example(array=np.array([[0.5, 1.01]]))
def test_to_bgr_uint8_on_random_arrays(array):
    """Every array: the conversion the docstring states, or InputError naming it."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        try:
            image = to_bgr_uint8(array, name='fuzzed')
        except InputError as error:
            assert str(error).startswith('fuzzed: ')
            assert _expected_bgr(array) is None, f'refused a valid image: {error}'
            return
    assert _expected_bgr(array) is not None, 'accepted an invalid image'
    _assert_converted(image, array)
