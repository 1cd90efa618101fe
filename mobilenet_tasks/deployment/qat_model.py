"""The QAT model: a detector or segmentor whose network runs as a fake-quantized
graph (:mod:`.qat`), trained, validated and checkpointed by mmengine's Runner like the
float model.

    model = dict(type='mobilenet_tasks.QATModel', model=<the float config's model>,
                 float_checkpoint='work_dirs/demo/detection/iter_800.pth',
                 bn_freeze_iter=40, observer_freeze_iter=60)

``tools/train.py CONFIG --qat --load-from FLOAT.pth`` writes this from a float config
(:func:`~.qat_config.qat_config`). What is outside the exported network is the float
model's own code, as for :class:`~mobilenet_tasks.backends.BackendModel`: its data
preprocessor, the losses (the detection head's ``loss_by_feat`` on the graph's raw
outputs, the decode head's ``loss_by_feat`` on the logits) and the post-processing
(:func:`~mobilenet_tasks.backends.model.samples_from_raw_outputs`).

The schedule of the paper's recipe is counted by the model itself, in the buffer
``qat_iter`` (saved in every checkpoint, so a resumed run freezes at the same
iterations): from ``bn_freeze_iter`` on, batch norms use their running statistics;
from ``observer_freeze_iter`` on, the quantization ranges stay as they are.
Validation runs the graph in eval mode with the observers off (it does not move the
ranges), that is, as the int8 model will run.

The state dict is the graph's (the network's weights and buffers under their module
paths, plus each fake-quantizer's scale, zero point and observed range); the float
model's weights are loaded from ``float_checkpoint`` before the graph is made, and
only then, so a QAT checkpoint loads into a model built with
``float_checkpoint=None``.
"""
import logging
import os
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModel, revert_sync_batchnorm
from mmengine.registry import MODELS as ROOT_MODELS

from mobilenet_tasks.backends.model import (TaskModelAttributes,
                                            samples_from_raw_outputs)
from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.utils.task import task_of_model
from mobilenet_tasks.utils.weights import QAT_ITER_KEY

from .qat import (QATError, convert_qat_graph, prepare_qat_graph, set_graph_mode,
                  set_observers)


def example_input(task_model: nn.Module, input_size: Optional[Sequence[int]],
                  task: str) -> torch.Tensor:
    """A batch of 2 of the training size, for the capture (its shape only matters:
    batch, height and width are dynamic in the graph)."""
    if input_size is None:
        size = getattr(task_model.data_preprocessor, 'size', None)
        if task == 'detection':
            priors = getattr(task_model.bbox_head, 'prior_generator', None)
            size = getattr(priors, 'input_size', None) or size
        if isinstance(size, int):
            size = (size, size)
        input_size = size or (320, 320)
    h, w = (int(v) for v in input_size)
    return torch.zeros(2, 3, h, w)


@MODELS.register_module()
class QATModel(TaskModelAttributes, BaseModel):
    """A detector or segmentor trained with simulated int8 quantization.

    Args:
        model (dict): The float model's config (an mmdet detector or mmseg
            segmentor).
        float_checkpoint (str, optional): Its trained weights, loaded strictly before
            the graph is made. None: the weights come from a QAT checkpoint loaded
            afterwards (resume, test, export).
        bn_freeze_iter (int): Training iteration from which batch norms use their
            running statistics (-1: never).
        observer_freeze_iter (int): Iteration from which the quantization ranges are
            kept (-1: never).
        keep_float (Sequence[str]): Parts left float, as the int8 export's
            (``'se'``, ``'head'``, ``'stem'``).
        input_size (tuple[int, int], optional): ``(H, W)`` of the capture; default the
            preprocessor's crop size or the anchors' input size.
        weight_averaging (float): The weight ranges' moving-average constant (1: the
            current min/max, Jacob et al.).

    Raises:
        QATError: A model the graph cannot be made of.
    """

    wraps_model = True  # its config's ``model`` is the task model (utils.task)

    def __init__(self, model: dict, float_checkpoint: Optional[str] = None,
                 bn_freeze_iter: int = -1, observer_freeze_iter: int = -1,
                 keep_float: Sequence[str] = (), input_size=None,
                 weight_averaging: float = 1.0, init_cfg=None):
        from .detection_graph import DetectorRawOutputs
        from .export_common import SegmentorLogits
        if float_checkpoint is not None and '://' not in str(float_checkpoint) and (
                not os.path.isfile(float_checkpoint)):
            raise FileNotFoundError(f'float_checkpoint {float_checkpoint}: no such file '
                                    '(QAT fine-tunes a trained float checkpoint)')
        task_model = ROOT_MODELS.build(model)
        task = task_of_model(task_model, what='QAT trains detection and segmentation '
                             'models')
        if float_checkpoint is not None:
            from mobilenet_tasks.utils.weights import load_into
            load_into(task_model, float_checkpoint, 'the QAT config')
        task_model = revert_sync_batchnorm(task_model)
        if task == 'segmentation' and getattr(task_model, 'with_auxiliary_head', False):
            print_log('QAT: the auxiliary head is not part of the deployed network and '
                      'is not trained', logger='current', level=logging.WARNING)
        super().__init__(data_preprocessor=task_model.data_preprocessor,
                         init_cfg=init_cfg)
        wrapper = (DetectorRawOutputs(task_model) if task == 'detection'
                   else SegmentorLogits(task_model))
        example = example_input(task_model, input_size, task)
        # the graph owns the weights from here on; the float model keeps its code
        self.graph = prepare_qat_graph(wrapper, example, keep_float=tuple(keep_float),
                                       weight_averaging=weight_averaging)
        self.__dict__['torch_model'] = task_model.eval()  # not a submodule: no weights
        self.task = task
        self.bn_freeze_iter = int(bn_freeze_iter)
        self.observer_freeze_iter = int(observer_freeze_iter)
        self.keep_float = tuple(keep_float)
        self.register_buffer(QAT_ITER_KEY, torch.zeros((), dtype=torch.long))
        self._apply_schedule(training=True)

    # -- the recipe's schedule --------------------------------------------------------
    def _reached(self, at: int) -> bool:
        return at >= 0 and int(self.qat_iter) >= at

    def _apply_schedule(self, training: bool) -> None:
        set_graph_mode(self.graph, training,
                       bn_frozen=self._reached(self.bn_freeze_iter))
        set_observers(self.graph, training
                      and not self._reached(self.observer_freeze_iter))

    def train(self, mode: bool = True):
        # the graph refuses nn.Module.train (torchao): its modes are its flags
        self.training = mode
        self.data_preprocessor.train(mode)
        self._apply_schedule(training=mode)
        return self

    def _step_schedule(self) -> None:
        """Before a training iteration's forward pass (in ``loss``, which the DDP
        wrapper calls too; it bypasses ``train_step``): freeze what the iteration
        count says."""
        step = int(self.qat_iter)
        for name, at in (('batch norm statistics', self.bn_freeze_iter),
                         ('quantization ranges', self.observer_freeze_iter)):
            if at >= 0 and step == at:
                print_log(f'QAT: {name} frozen from iteration {at}', logger='current')
        self._apply_schedule(training=True)

    # -- forward --------------------------------------------------------------------
    def _outputs(self, inputs: torch.Tensor):
        outputs = self.graph(inputs)
        return [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._outputs(inputs)
        raise ValueError(f'mode must be "loss", "predict" or "tensor", got {mode!r}')

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        if self.training:
            self._step_schedule()
            self.qat_iter += 1
        outputs = self._outputs(inputs)
        if self.task == 'segmentation':
            from mmseg.utils import add_prefix
            losses = self.torch_model.decode_head.loss_by_feat(outputs[0], data_samples)
            return add_prefix(losses, 'decode')
        from mmdet.models.utils import unpack_gt_instances
        gts, ignores, metas = unpack_gt_instances(data_samples)
        levels = len(outputs) // 2
        return self.torch_model.bbox_head.loss_by_feat(
            outputs[:levels], outputs[levels:], gts, metas, ignores)

    def predict(self, inputs: torch.Tensor, data_samples, rescale: bool = True):
        if self.training:
            raise QATError('predict in train mode would move the quantization ranges: '
                           'call model.eval() first')
        return samples_from_raw_outputs(self.torch_model, self.task,
                                        self._outputs(inputs), data_samples, rescale)

    # -- deployment -------------------------------------------------------------------
    def converted_graph(self) -> torch.fx.GraphModule:
        """The int8 graph (``convert_pt2e``; this model is unchanged)."""
        return convert_qat_graph(self.graph)


__all__ = ['QATModel', 'example_input']
