"""convert_cityscapes(label_ids=True): the labelIds and instanceIds maps that the gtFine
zip ships and cityscapesscripts' evaluation reads, made from the polygons."""
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from mobilenet_tasks.datasets import convert_cityscapes, make_demo_cityscapes
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ('_gtFine_labelTrainIds.png', '_gtFine_labelIds.png',
            '_gtFine_instanceIds.png')


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('ids') / 'demo'
    make_demo_cityscapes(root, num_train=1, num_val=2, image_size=(64, 128), seed=2)
    return root


def _maps(json_path):
    stem = json_path.name[:-len('_gtFine_polygons.json')]
    return [np.asarray(Image.open(json_path.with_name(stem + suffix)))
            for suffix in SUFFIXES]


def test_label_ids_agree_with_train_ids(demo):
    assert convert_cityscapes(demo) == 3
    assert not list(demo.rglob('*_labelIds.png'))  # only when asked
    assert convert_cityscapes(demo, label_ids=True) == 3  # labelIds missing: all redone
    assert convert_cityscapes(demo, label_ids=True) == 0  # up to date
    assert convert_cityscapes(demo) == 0
    for json_path in sorted(demo.glob('gtFine/*/*/*_polygons.json')):
        train_ids, label_ids, instance_ids = _maps(json_path)
        assert label_ids.dtype == np.uint8 and instance_ids.dtype == np.uint16
        assert label_ids.shape == instance_ids.shape == train_ids.shape == (64, 128)
        to_train_id = np.full(256, 255, np.uint8)
        for label_id, label in id2label.items():
            if 0 <= label_id < 256 and 0 <= label.trainId < 255:
                to_train_id[label_id] = label.trainId
        np.testing.assert_array_equal(to_train_id[label_ids], train_ids)
        # instance ids: label id x 1000 + instance for classes with instances
        class_of_instance = np.where(instance_ids >= 1000, instance_ids // 1000,
                                     instance_ids)
        np.testing.assert_array_equal(class_of_instance, label_ids)
        assert (instance_ids >= 1000).any()  # the demo has cars and people


def test_command_line_flag(tmp_path, capsys):
    make_demo_cityscapes(tmp_path / 'd', num_train=1, num_val=1, image_size=(64, 128))
    tool = load_tool('tools/dataset_converters/cityscapes.py')
    assert tool.main([str(tmp_path / 'd'), '--label-ids']) == 0
    assert 'labelTrainIds, labelIds and instanceIds maps of 2 polygon files' in \
        capsys.readouterr().out
    assert len(list((tmp_path / 'd').rglob('*_gtFine_instanceIds.png'))) == 2
