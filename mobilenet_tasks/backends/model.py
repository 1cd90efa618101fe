"""An exported model file run by a runtime behind the PyTorch model's interface.

:class:`BackendModel` is an mmengine ``BaseModel`` whose ``test_step`` / ``predict``
give the same data samples as the detector's or segmentor's, so everything built on
those runs an exported (float or int8) model unchanged, whatever the runtime: mmengine's
``Runner.test`` with the config's evaluator (``tools/test.py CONFIG model.onnx``: COCO
mAP, mIoU, cityscapesscripts) and :class:`~mobilenet_tasks.apis.Inferencer`
(``weights='model.onnx'``). mmdeploy does the same with its own backend wrappers, but
needs its custom-op library and its own configs; here only the runtime is needed.

The PyTorch model of the config is built too (no weights are loaded into it): its data
preprocessor prepares the batches, and what is outside the graph is done by its own
code, so that it is the same as PyTorch's:

- detection exported with ``nms=True``: boxes are divided by the resize's scale factor
  (``rescale``), as mmdet's ``_bbox_post_process`` does; the rest is in the graph;
- detection with ``nms=False``: the head's ``predict_by_feat`` on the graph's raw
  outputs (mmdet's post-processing exactly);
- segmentation: the segmentor's ``postprocess_result`` (resize to the original image,
  argmax) on the graph's logits.
"""
import os
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import MODELS as ROOT_MODELS

from mobilenet_tasks.registry import MODELS
from mobilenet_tasks.utils.task import TaskError, task_of_model

from .base import open_backend


class TaskModelAttributes:
    """The attributes the inferencer and mmdet / mmseg code read from a model, taken
    from the detector or segmentor ``self.torch_model`` that a model wrapping one
    (:class:`BackendModel`, :class:`~mobilenet_tasks.deployment.qat_model.QATModel`)
    runs the code of."""

    @property
    def bbox_head(self):
        return getattr(self.torch_model, 'bbox_head', None)

    @property
    def decode_head(self):
        return getattr(self.torch_model, 'decode_head', None)

    @property
    def dataset_meta(self):
        return getattr(self.torch_model, 'dataset_meta', None)

    @dataset_meta.setter
    def dataset_meta(self, value):
        self.torch_model.dataset_meta = value


@MODELS.register_module()
class BackendModel(TaskModelAttributes, BaseModel):
    """Run a model file exported by ``tools/deployment/export_onnx.py`` (or its int8
    quantization) where the config's PyTorch model would run.

    Args:
        file (str): The exported model.
        model (dict | nn.Module): The config's ``model`` (built here, weights unused)
            or an already built detector / segmentor.
        threads (int, optional): The runtime's intra-op threads; None: its default
            (all cores).
        backend (str, optional): The runtime; None: the one the file's suffix names
            (:data:`~mobilenet_tasks.backends.base.RUNTIMES`).

    Raises:
        FileNotFoundError: No such ``file``.
        ValueError: The file was not exported by this project (no ``task`` in its
            metadata) or its task is not the model's.
    """

    wraps_model = True  # its config's ``model`` is the task model (utils.task)

    def __init__(self, file: str, model, threads: Optional[int] = None,
                 backend: Optional[str] = None, init_cfg=None):
        file = os.fspath(file)
        self.runtime = open_backend(file, backend, threads)
        torch_model = model if isinstance(model, nn.Module) else ROOT_MODELS.build(
            model)
        super().__init__(data_preprocessor=torch_model.data_preprocessor,
                         init_cfg=init_cfg)
        self.torch_model = torch_model.eval()
        self.file = file
        self.metadata = self.runtime.metadata
        task = self.metadata.get('task')
        if task not in ('detection', 'segmentation'):
            raise ValueError(f'{file} has no task in its metadata: '
                             f'{self.runtime.export_hint}')
        own = task_of_model(torch_model, what='an exported model runs a detection or '
                            'segmentation config')
        if task != own:
            raise TaskError(f'{file} is a {task} model, but the config builds a '
                            f'{own} model; pass the config it was exported from '
                            f'({self.metadata.get("config", "see its metadata")})')
        self.task = task
        self.with_nms = bool(self.metadata.get('nms', False))

    # the file, by its old name (ONNXRuntimeModel.onnx_file)
    @property
    def onnx_file(self) -> str:
        return self.file

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'predict'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._run(inputs)
        raise ValueError(f'an exported model only predicts (mode "predict" or '
                         f'"tensor"), got mode {mode!r}')

    def test_step(self, data) -> list:
        data = self.data_preprocessor(data, False)
        return self.predict(data['inputs'], data['data_samples'])

    val_step = test_step

    def train_step(self, data, optim_wrapper):
        raise RuntimeError('an exported model cannot be trained: train the PyTorch '
                           'model and export it again')

    # -- running the graph ------------------------------------------------------------
    def _check_input(self, inputs: torch.Tensor) -> None:
        size = tuple(inputs.shape[2:])
        fixed = self.runtime.fixed_size
        if fixed is not None and size != fixed:
            raise ValueError(
                f'{self.file} was exported for {fixed[0]}x{fixed[1]} inputs, but the '
                f'preprocessing gives {size[0]}x{size[1]}: export it again at this '
                f'size (--shape {size[0]} {size[1]})'
                + (' or with --dynamic' if self.task == 'segmentation' else ''))

    def _run(self, inputs: torch.Tensor) -> List[List[np.ndarray]]:
        """The graph's outputs, one list per image if the batch is fixed to 1, else
        one list for the whole batch."""
        self._check_input(inputs)
        array = inputs.detach().cpu().float().numpy()
        if self.runtime.fixed_batch == 1 and array.shape[0] != 1:
            return [self.runtime.run(array[i:i + 1]) for i in range(array.shape[0])]
        return [self.runtime.run(array)]

    def predict(self, inputs: torch.Tensor, data_samples: Sequence,
                rescale: bool = True) -> list:
        """The model's ``predict`` on a preprocessed batch, by the runtime."""
        outputs = self._run(inputs)
        if self.task == 'detection' and self.with_nms:
            return self._detections_from_graph(outputs, data_samples, rescale)
        batch = [torch.from_numpy(np.concatenate([o[i] for o in outputs]))
                 for i in range(len(outputs[0]))]
        return samples_from_raw_outputs(self.torch_model, self.task, batch,
                                        data_samples, rescale)

    def _detections_from_graph(self, outputs, data_samples, rescale: bool) -> list:
        from mmengine.structures import InstanceData
        for (boxes, scores, labels), sample in zip(outputs, data_samples):
            boxes = torch.from_numpy(boxes).float().reshape(-1, 4)
            if rescale:
                scale = sample.metainfo.get('scale_factor')
                if scale is None:
                    raise ValueError('rescale needs scale_factor in the data '
                                     "samples' metainfo (the Resize transform sets it)")
                boxes = boxes / boxes.new_tensor(scale).repeat(2)
            instances = InstanceData()
            instances.bboxes = boxes
            instances.scores = torch.from_numpy(scores).float()
            instances.labels = torch.from_numpy(labels).long()
            sample.pred_instances = instances
        return list(data_samples)


def samples_from_raw_outputs(torch_model: nn.Module, task: str,
                             outputs: Sequence[torch.Tensor], data_samples: Sequence,
                             rescale: bool = True) -> list:
    """The data samples ``torch_model.predict`` gives, from the exported graph's
    outputs for the batch, by the model's own post-processing: segmentation
    ``[logits]`` (at the input size) through ``postprocess_result``; detection the raw
    head outputs ``cls_score_0, ..., bbox_pred_0, ...`` through the head's
    ``predict_by_feat`` (also what :class:`~mobilenet_tasks.deployment.qat_model.
    QATModel` predicts with)."""
    if task == 'segmentation':
        return torch_model.postprocess_result(outputs[0], data_samples)
    levels = len(outputs) // 2
    results = torch_model.bbox_head.predict_by_feat(
        list(outputs[:levels]), list(outputs[levels:]),
        batch_img_metas=[s.metainfo for s in data_samples], rescale=rescale)
    return torch_model.add_pred_to_datasample(data_samples, results)


@MODELS.register_module()
class ONNXRuntimeModel(BackendModel):
    """:class:`BackendModel` by its first name (configs dumped by earlier versions
    build ``mobilenet_tasks.ONNXRuntimeModel`` with ``onnx_file=``)."""

    def __init__(self, onnx_file: str, model, threads: Optional[int] = None,
                 init_cfg=None):
        super().__init__(onnx_file, model, threads, backend='onnxruntime',
                         init_cfg=init_cfg)


def backend_model_config(file: str, cfg: Config, threads: Optional[int] = None,
                         backend: Optional[str] = None) -> dict:
    """``cfg.model`` replaced by a :class:`BackendModel` of ``file`` (the config's
    model inside it), for ``Runner.from_cfg``."""
    return dict(type='mobilenet_tasks.BackendModel', file=file, model=cfg.model,
                threads=threads, backend=backend)
