"""cityscapesscripts' own evaluation of a segmentor, as mmseg's CityscapesMetric runs it,
with the defects of that class (mmseg 1.2.2) and of cityscapesscripts 2.3.0 on numpy 2.4
worked around.

    test_evaluator = [
        dict(type='IoUMetric', iou_metrics=['mIoU']),
        dict(type='mobilenet_tasks.CityscapesMetric', output_dir='work_dirs/x/cs_eval'),
    ]

(``tools/test.py CONFIG CKPT --cityscapes-eval`` adds it.) Each prediction is written as
a labelIds PNG into ``output_dir`` and compared by cityscapesscripts'
``evalPixelLevelSemanticLabeling.evaluateImgLists`` with the ground truth's
``*_gtFine_labelIds.png`` (and ``*_gtFine_instanceIds.png`` for the instance-level
scores), the benchmark's own code. The figures are cityscapesscripts' fractions in [0, 1]
(mmseg's IoUMetric reports percent): ``cityscapes/averageScoreClasses`` is the 19-class
mean IoU the benchmark ranks by, and equals IoUMetric's mIoU / 100 on the same
predictions.
"""
import os.path as osp
import shutil
from collections import OrderedDict
from contextlib import contextmanager
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.dist import is_main_process
from mmengine.logging import MMLogger, print_log
from mmseg.evaluation.metrics.citys_metric import CSEval
from mmseg.evaluation.metrics.citys_metric import \
    CityscapesMetric as _MMSegCityscapesMetric

from ..datasets.checks import (cityscapes_instance_ids_path, cityscapes_label_ids_path,
                               label_ids_missing_message)
from ..registry import METRICS

SCORES = ('averageScoreClasses', 'averageScoreCategories')
INSTANCE_SCORES = ('averageScoreInstClasses', 'averageScoreInstCategories')


class _NumpyWithIn1d:
    """numpy, plus the ``np.in1d`` that numpy 2.4 removed (deprecated since 2.0)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def in1d(ar1, ar2, assume_unique=False, invert=False):
        return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


@contextmanager
def _numpy_in1d(module):
    """Let ``module`` call ``np.in1d`` on numpy >= 2.4, for the duration of the block.

    cityscapesscripts 2.3.0's ``evalPixelLevelSemanticLabeling.evaluatePair`` calls
    ``np.in1d`` for the instance-level scores and the pixel accuracy; on numpy 2.4 that
    is an AttributeError. Only that module's ``np`` name is swapped, not numpy.
    """
    if hasattr(np, 'in1d') or getattr(module, 'np', None) is not np:
        yield
        return
    module.np = _NumpyWithIn1d()
    try:
        yield
    finally:
        module.np = np


@METRICS.register_module()
class CityscapesMetric(_MMSegCityscapesMetric):
    """mmseg's ``CityscapesMetric`` with its mmseg 1.2.2 defects fixed.

    Defects of ``mmseg.evaluation.metrics.CityscapesMetric`` (mmseg 1.2.2) fixed here:

    1. It returns only ``averageScoreCategories`` and ``averageScoreInstCategories``
       (the 7 coarse categories), dropping ``averageScoreClasses``, the 19-class IoU
       that the Cityscapes benchmark ranks by and papers report as mIoU (mmseg 0.x
       returned it). This class returns it, with ``averageScoreInstClasses``.
    2. A ground-truth ``*_gtFine_labelIds.png`` or ``*_gtFine_instanceIds.png`` that is
       missing (e.g. a tree converted from polygons, which has only labelTrainIds)
       surfaces only after inference over the whole set, as cityscapesscripts'
       ``ERROR: Unable to load ...`` and ``sys.exit(-1)``. Here ``process`` checks the
       files of each batch and raises :class:`FileNotFoundError` saying how to make them.
    3. Its ``__init__`` sets ``self.prefix = prefix`` after ``BaseMetric`` did, so the
       metric has no prefix unless one is passed. Here the default prefix is
       ``'cityscapes'`` (``cityscapes/averageScoreClasses``).
    4. Its ``__del__`` (with ``keep_results=False``) calls ``shutil.rmtree`` on
       ``output_dir`` unconditionally: when the folder is already gone (two metrics
       sharing it) or ``__init__`` failed, Python prints an ignored exception at exit.
       Here removal is tolerant.
    5. With ``format_only`` it logs the parent of ``output_dir`` as where the results
       are. Here it logs ``output_dir``.

    And one of cityscapesscripts 2.3.0 (what mmseg's class calls): its evaluation calls
    ``np.in1d``, which numpy 2.4 removed; the call runs with a stand-in (see
    ``_numpy_in1d``).

    Args:
        output_dir (str): Where the predictions are written as labelIds PNGs.
        ignore_index (int): Index that will be ignored in evaluation. Defaults to 255.
        format_only (bool): Only write the PNGs (e.g. for the test server), without
            evaluating; needs ``keep_results``. Defaults to False.
        keep_results (bool): Keep ``output_dir`` when the metric is deleted. Defaults
            to False.
        inst_level_score (bool): Also compute the instance-level scores, which read
            ``*_gtFine_instanceIds.png``. Defaults to True (as mmseg).
        collect_device (str): Device used for collecting results across ranks.
        prefix (str, optional): Prefix of the metric names. Defaults to 'cityscapes'.
    """
    default_prefix: Optional[str] = 'cityscapes'

    def __init__(self,
                 output_dir: str,
                 ignore_index: int = 255,
                 format_only: bool = False,
                 keep_results: bool = False,
                 inst_level_score: bool = True,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(
            output_dir=output_dir,
            ignore_index=ignore_index,
            format_only=format_only,
            keep_results=keep_results,
            collect_device=collect_device,
            prefix=prefix,
            **kwargs)
        self.prefix = prefix or self.default_prefix  # defect 3
        self.inst_level_score = inst_level_score

    def __del__(self) -> None:
        """Remove ``output_dir`` unless the results are kept (defect 4)."""
        if getattr(self, 'keep_results', True) or not hasattr(self, 'output_dir'):
            return
        try:
            if is_main_process():
                shutil.rmtree(self.output_dir, ignore_errors=True)
        except Exception:  # interpreter shutdown: modules may be torn down
            pass

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Write the batch's predictions as labelIds PNGs; check its ground truth."""
        if not self.format_only:  # defect 2
            for data_sample in data_samples:
                label_ids = cityscapes_label_ids_path(data_sample['seg_map_path'])
                needed = [label_ids]
                if self.inst_level_score:
                    needed.append(cityscapes_instance_ids_path(label_ids))
                for path in needed:
                    if not osp.isfile(path):
                        raise FileNotFoundError(label_ids_missing_message(path))
        super().process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Run cityscapesscripts' ``evaluateImgLists`` on the written predictions.

        Args:
            results (list): ``(prediction png, ground-truth labelIds png)`` pairs.

        Returns:
            dict[str, float]: ``averageScoreClasses`` and ``averageScoreCategories``
            (and their instance-level versions with ``inst_level_score``), as fractions.
        """
        logger: MMLogger = MMLogger.get_current_instance()
        if self.format_only:
            logger.info(f'results are saved to {self.output_dir}')  # defect 5
            return OrderedDict()
        print_log(
            'Evaluating in Cityscapes style: cityscapesscripts on the predictions '
            f'under {self.output_dir} ...', logger=logger)
        args = CSEval.args  # cityscapesscripts' module-level options
        args.evalInstLevelScore = self.inst_level_score
        args.predictionPath = osp.abspath(self.output_dir)
        args.evalPixelAccuracy = True
        args.JSONOutput = False
        pred_list, gt_list = zip(*results)
        try:
            with _numpy_in1d(CSEval):
                scores = CSEval.evaluateImgLists(list(pred_list), list(gt_list), args)
        except SystemExit as error:  # cityscapesscripts' printError
            raise RuntimeError('cityscapesscripts stopped the evaluation (see its ERROR '
                               f'line above; exit code {error.code})') from None
        names = SCORES + (INSTANCE_SCORES if self.inst_level_score else ())
        return OrderedDict((name, float(scores[name])) for name in names)  # defect 1
