"""The data checks: a config's datasets are on disk, and their data is good.

Missing data: :func:`check_data_files` (called by tools/train.py and tools/test.py before
the Runner is built) stops at once, naming each missing path with the loader and the
config key that set it, and how to get the dataset when the path is its standard place
(``data/coco``, ``data/cityscapes``), else what to fix (:mod:`.files`). Bad data: then
it finds the bad items (:func:`validate_datasets`, :mod:`.validate`) and fails fast or
skips them, as the config says. The policy is the top-level config key
``data_check``::

    data_check = dict(
        policy='fail',         # 'fail' (default): stop, naming each file and fault
                               # 'skip': leave the bad items out, warn, count in the log
                               # 'off': no content checks (paths are still checked)
        decode_images='auto',  # decode each image (True), only check its header
                               # (False), or ('auto') decode all when a dataset has at
                               # most decode_limit images, else decode_limit evenly
                               # spaced ones and check the others' headers
        decode_labels='auto',  # the same for label maps (their values are only
                               # checked when decoded)
        decode_limit=200,
        max_runtime_skips=100,  # 'skip': stop after this many run-time failures
    )

What is checked, per leaf dataset of the train/val/test loaders, by its class (its
``type`` looked up in the config's ``default_scope``, so that a subclass registered
under another name is checked as its base class is):

- COCO json (mmdet's ``CocoDataset`` and its subclasses, other than LVIS and panoptic;
  other datasets whose ``ann_file`` ends in ``.json``):
  the file parses (a truncated file is reported with the JSON error's line and column),
  has ``images``/``annotations``/``categories`` lists; the config's
  ``metainfo.classes`` are all among the json's category names (fatal under any
  policy: mmdet would silently shift the labels); each annotation's ``image_id`` and
  ``category_id`` exist; each ``bbox`` is 4 finite numbers with positive width and
  height, inside its image (1 pixel of slack); each image file exists, is not empty,
  starts like an image file and, when decoded, decodes to the size the json says.
  Images without annotations are not a fault (COCO train2017 has 1021): they are
  counted, and said to be dropped by mmdet when the dataset's
  ``filter_cfg.filter_empty_gt`` is set.
- Cityscapes (``CityscapesDataset``): each ``*_leftImg8bit.png`` has its
  ``*_gtFine_labelTrainIds.png``; both are non-empty image files; a decoded label map is
  single-channel, the size of its image, with values in ``0..num_classes-1`` or 255
  (ignore), by the rules of the next item (the same code), with Cityscapes' advice
  (labelIds instead of labelTrainIds, the converter); the 19 classes (or the config's
  ``metainfo.classes``) must equal the model's ``decode_head.num_classes`` (fatal).
- Any other mmseg ``BaseSegDataset`` (a user's own, ADE20K, VOC, ...;
  :mod:`.segmentation`): the dataset lists its samples as mmseg does; each image and
  label map exists and is an image file; a decoded label map is single-channel, the size
  of its image, with values that mmseg (``reduce_zero_label``: 0 -> 255, v -> v-1;
  ``label_map``) turns into ``0..num_classes-1`` or an ignore value (255, the dataset's
  ``ignore_index``); ``num_classes`` is the number of the dataset's classes
  (``metainfo``, else its class's ``METAINFO``), which must equal the model's
  ``decode_head.num_classes`` (fatal).

Under ``'skip'`` a cleaned copy is written into ``<work_dir>/data_check/`` and the
loader (and a matching evaluator's ``ann_file``) is pointed at it: a COCO json without
the bad annotations and the images whose files are bad, a Cityscapes or segmentation
list file (mmseg's ``ann_file``) without the bad images. A warning names what was
skipped, and a :class:`DataCheckHook` added to ``custom_hooks`` writes the counts into
the run's log and its message hub (``data_check/skipped``).

At run time (an image that goes bad after the check, or a fault the cheap checks do not
see): the train loader's dataset is wrapped in :class:`CheckedDataset`. A sample whose
loading or pipeline raises stops the run with a :class:`BadDataError` naming the file
under ``'fail'`` (mmcv's own error does not name an empty file); under ``'skip'`` it is
replaced by the next sample, with a warning, and counted
(``data_check/runtime_skipped`` in the message hub, a line in the log from
:class:`DataCheckHook`; workers share the counter). More than ``max_runtime_skips``
(default 100) such samples in a run stop it.

Cost: header checks read 16 bytes a file (COCO train2017: 118k opens, seconds); decoding
is what ``decode_limit`` bounds: on one core a 2048x1024 Cityscapes label map takes about
25 ms to decode and count, a leftImg8bit image a few times more, so the default 200 adds
some 40 s to the start of a full Cityscapes run (train and val), a few to COCO. A
palette PNG (VOC's masks) is decoded by Pillow, which gives its indices as mmseg does.

Modules, each importing only ones listed before it: :mod:`.errors` (the errors,
:class:`Fault`), :mod:`.policy` (``data_check``), :mod:`.layout` (where a config's data
is), :mod:`.fileio`, :mod:`.base` (what a checker does), one module per dataset type
(:mod:`.coco`, :mod:`.cityscapes`, :mod:`.segmentation`), :mod:`.validate`
(:data:`TABLE`, dataset class -> checker, and the pass), :mod:`.files` (missing data,
then the pass), :mod:`.wrapper` (:class:`CheckedDataset`, registered in DATASETS) and
:mod:`.hook` (:class:`DataCheckHook`, registered in HOOKS). A new dataset type is one
module with a :class:`DatasetChecker` and one row of :data:`TABLE`.
"""
from .base import DataCheck, DatasetChecker
from .cityscapes import (CITYSCAPES_NUM_CLASSES, IGNORE_INDEX, CityscapesChecker,
                         check_cityscapes)
from .coco import BOX_SLACK, CocoCheck, CocoChecker, check_coco, clean_coco
from .errors import BadDataError, DatasetNotFoundError, Fault
from .files import (DEMO_HINT, HOW_TO_GET, STANDARD, MissingPath,
                    check_cityscapes_eval_files, check_data_files, cityscapes_problems,
                    label_ids_missing_message, missing_data_files, missing_message,
                    missing_paths)
from .hook import DataCheckHook
from .layout import (CITYSCAPES_IMG_SUFFIX, CITYSCAPES_SEG_MAP_SUFFIX, CONVERT_COMMAND,
                     POLYGON_SUFFIX, cityscapes_instance_ids_path,
                     cityscapes_label_ids_path, dataset_class, dataset_keys,
                     dataset_type_names, loader_datasets)
from .policy import POLICIES, DataCheckPolicy, data_check_policy
from .segmentation import (SegmentationChecker, allowed_values, check_segmentation,
                           read_label_map)
from .validate import MAX_LISTED, TABLE, checker_for, validate_datasets
from .wrapper import CheckedDataset

__all__ = [
    # errors and policy
    'DatasetNotFoundError', 'BadDataError', 'Fault', 'POLICIES', 'DataCheckPolicy',
    'data_check_policy',
    # missing data
    'HOW_TO_GET', 'STANDARD', 'DEMO_HINT', 'MissingPath', 'missing_data_files',
    'missing_paths', 'missing_message', 'cityscapes_problems', 'check_data_files',
    'label_ids_missing_message', 'check_cityscapes_eval_files',
    # where the data is
    'CONVERT_COMMAND', 'CITYSCAPES_IMG_SUFFIX', 'CITYSCAPES_SEG_MAP_SUFFIX',
    'POLYGON_SUFFIX', 'loader_datasets', 'dataset_keys', 'dataset_class',
    'dataset_type_names',
    'cityscapes_label_ids_path', 'cityscapes_instance_ids_path',
    # bad data
    'DataCheck', 'DatasetChecker', 'TABLE', 'checker_for', 'validate_datasets',
    'MAX_LISTED', 'BOX_SLACK', 'CocoCheck', 'CocoChecker', 'check_coco', 'clean_coco',
    'CITYSCAPES_NUM_CLASSES', 'IGNORE_INDEX', 'CityscapesChecker', 'check_cityscapes',
    'SegmentationChecker', 'check_segmentation', 'read_label_map', 'allowed_values',
    # at run time
    'CheckedDataset', 'DataCheckHook'
]
