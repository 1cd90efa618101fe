"""An exported ``.onnx`` file run by onnxruntime behind the PyTorch model's interface.

``ONNXRuntimeModel`` is an mmengine ``BaseModel`` whose ``test_step`` / ``predict``
give the same data samples as the detector's or segmentor's, so everything built on
those runs an exported (float or int8) model unchanged: mmengine's ``Runner.test``
with the config's evaluator (``tools/test.py CONFIG model.onnx``: COCO mAP, mIoU,
cityscapesscripts) and :class:`~mobilenet_tasks.apis.Inferencer`
(``weights='model.onnx'``). mmdeploy does the same with its own backend wrappers, but
needs its custom-op library and its own configs; here only onnxruntime is needed.

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

from .onnx_export import read_metadata


def cpu_session(onnx_file, threads: Optional[int] = None,
                denormals_as_zero: bool = False):
    """An onnxruntime session on the CPU, quiet (errors only).

    Args:
        onnx_file (str): The model.
        threads (int, optional): Intra-op threads (one inter-op thread); None:
            onnxruntime's default (all cores).
        denormals_as_zero (bool): Flush denormal floats to zero (for timing: random
            weights can produce them, trained models rarely do).
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if denormals_as_zero:
        options.add_session_config_entry('session.set_denormal_as_zero', '1')
    return ort.InferenceSession(os.fspath(onnx_file), options,
                                providers=['CPUExecutionProvider'])


@MODELS.register_module()
class ONNXRuntimeModel(BaseModel):
    """Run an ONNX file exported by ``tools/deployment/export_onnx.py`` (or its int8
    quantization) where the config's PyTorch model would run.

    Args:
        onnx_file (str): The exported model.
        model (dict | nn.Module): The config's ``model`` (built here, weights unused)
            or an already built detector / segmentor.
        threads (int, optional): onnxruntime's intra-op threads; None: its default
            (all cores).

    Raises:
        FileNotFoundError: No such ``onnx_file``.
        ValueError: The file was not exported by this project (no ``task`` in its
            metadata) or its task is not the model's.
    """

    def __init__(self, onnx_file: str, model, threads: Optional[int] = None,
                 init_cfg=None):
        onnx_file = os.fspath(onnx_file)
        if not os.path.isfile(onnx_file):
            raise FileNotFoundError(f'ONNX file {onnx_file} does not exist; export one '
                                    'with tools/deployment/export_onnx.py')
        torch_model = model if isinstance(model, nn.Module) else ROOT_MODELS.build(
            model)
        super().__init__(data_preprocessor=torch_model.data_preprocessor,
                         init_cfg=init_cfg)
        self.torch_model = torch_model.eval()
        self.onnx_file = onnx_file
        self.metadata = read_metadata(onnx_file)
        task = self.metadata.get('task')
        own = 'detection' if hasattr(torch_model, 'bbox_head') else 'segmentation'
        if task not in ('detection', 'segmentation'):
            raise ValueError(f'{onnx_file} has no task in its metadata: export it with '
                             'tools/deployment/export_onnx.py')
        if task != own:
            raise ValueError(f'{onnx_file} is a {task} model, but the config builds a '
                             f'{own} model; pass the config it was exported from '
                             f'({self.metadata.get("config", "see its metadata")})')
        self.task = task
        self.with_nms = bool(self.metadata.get('nms', False))
        self.session = cpu_session(onnx_file, threads)
        shape = self.session.get_inputs()[0].shape  # ints, or names if dynamic
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self._fixed_size = tuple(shape[2:]) if all(
            isinstance(v, int) for v in shape[2:]) else None
        self._outputs = [o.name for o in self.session.get_outputs()]

    # attributes the inferencer and mmdet/mmseg code read from the model
    @property
    def bbox_head(self):
        return getattr(self.torch_model, 'bbox_head', None)

    @property
    def decode_head(self):
        return getattr(self.torch_model, 'decode_head', None)

    @property
    def dataset_meta(self):
        return getattr(self.torch_model, 'dataset_meta', None)

    def forward(self, inputs: torch.Tensor, data_samples=None, mode: str = 'predict'):
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._run(inputs)
        raise ValueError(f'an ONNX model only predicts (mode "predict" or "tensor"), '
                         f'got mode {mode!r}')

    def test_step(self, data) -> list:
        data = self.data_preprocessor(data, False)
        return self.predict(data['inputs'], data['data_samples'])

    val_step = test_step

    def train_step(self, data, optim_wrapper):
        raise RuntimeError('an ONNX model cannot be trained: train the PyTorch model '
                           'and export it again')

    # -- running the graph ------------------------------------------------------------
    def _check_input(self, inputs: torch.Tensor) -> None:
        size = tuple(inputs.shape[2:])
        if self._fixed_size is not None and size != self._fixed_size:
            raise ValueError(
                f'{self.onnx_file} was exported for {self._fixed_size[0]}x'
                f'{self._fixed_size[1]} inputs, but the preprocessing gives '
                f'{size[0]}x{size[1]}: export it again at this size (--shape '
                f'{size[0]} {size[1]})'
                + (' or with --dynamic' if self.task == 'segmentation' else ''))

    def _run(self, inputs: torch.Tensor) -> List[List[np.ndarray]]:
        """The graph's outputs, one list per image if the batch is fixed to 1, else
        one list for the whole batch."""
        self._check_input(inputs)
        array = inputs.detach().cpu().float().numpy()
        if self._fixed_batch == 1 and array.shape[0] != 1:
            return [self.session.run(self._outputs, {'input': array[i:i + 1]})
                    for i in range(array.shape[0])]
        return [self.session.run(self._outputs, {'input': array})]

    def predict(self, inputs: torch.Tensor, data_samples: Sequence,
                rescale: bool = True) -> list:
        """The model's ``predict`` on a preprocessed batch, by onnxruntime."""
        outputs = self._run(inputs)
        if self.task == 'segmentation':
            logits = torch.from_numpy(np.concatenate([o[0] for o in outputs]))
            return self.torch_model.postprocess_result(logits, data_samples)
        if self.with_nms:
            return self._detections_from_graph(outputs, data_samples, rescale)
        levels = len(self._outputs) // 2
        batch = [torch.from_numpy(np.concatenate([o[i] for o in outputs]))
                 for i in range(2 * levels)]
        results = self.bbox_head.predict_by_feat(
            batch[:levels], batch[levels:],
            batch_img_metas=[s.metainfo for s in data_samples], rescale=rescale)
        return self.torch_model.add_pred_to_datasample(data_samples, results)

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


def onnx_model_config(onnx_file: str, cfg: Config, threads: Optional[int] = None
                      ) -> dict:
    """``cfg.model`` replaced by an :class:`ONNXRuntimeModel` of ``onnx_file`` (the
    config's model inside it), for ``Runner.from_cfg``."""
    return dict(type='mobilenet_tasks.ONNXRuntimeModel', onnx_file=onnx_file,
                model=cfg.model, threads=threads)
