"""One inferencer for our detectors and segmenters: images in, numpy results out.

Compared with mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer``: the same model,
the same predictions (``test_step`` through the config's test pipeline, proven in
``tests/test_apis/test_inferencer.py``), but preprocessing on whole batches instead of
an mmcv pipeline per image (:mod:`.preprocess`), drawing with OpenCV instead of
matplotlib (:mod:`.draw`), weights loaded strictly, and inputs checked with messages
that name the file.
"""
import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmengine.model import revert_sync_batchnorm
from tqdm import tqdm

from mobilenet_tasks.backends import PYTORCH, BackendModel, choose_backend
from mobilenet_tasks.utils.config import build_model, load_config, resolve_config
from mobilenet_tasks.utils.metainfo import classes_and_palette
from mobilenet_tasks.utils.task import num_classes, task_of_model
from mobilenet_tasks.utils.weights import load_into, load_weights
from .draw import draw_detections, draw_segmentation
from .inputs import (InputError, is_video_file, list_images, read_image,
                     to_bgr_uint8)
from .preprocess import Preprocessor
from .results import DetectionResult, SegmentationResult

Result = Union[DetectionResult, SegmentationResult]
_WHAT = 'the Inferencer runs detection and segmentation configs'


class Inferencer:
    """Run a detection or segmentation config on images, arrays or folders.

    Args:
        model (str): A config file, or a ``Name`` of ``model-index.yml`` (e.g.
            ``'ssdlite_v3_large_demo'``).
        weights (str, optional): A checkpoint: mmengine's (``tools/train.py``) or a
            converter's ``{'state_dict', 'meta'}``, loaded strictly; or a model file
            exported from the config, float or int8: ``.onnx``
            (``tools/deployment/export_onnx.py``, run by onnxruntime, or by OpenVINO
            with ``backend='openvino'``), ``.pte`` (``export_executorch.py``,
            ExecuTorch + XNNPACK), ``.xml`` (``export_openvino.py``, OpenVINO). None:
            random weights (with a warning), for trying the pipeline only.
        device (str): ``'cpu'`` or ``'cuda'`` / ``'cuda:N'``.
        score_thr (float): Detections scoring below it are dropped (in the head, before
            NMS, where it is above the config's own ``score_thr``: the same boxes,
            faster). Unused for segmentation.
        batch_size (int): Images per forward pass.
        backend (str, optional): ``'pytorch'`` or a runtime of
            :data:`mobilenet_tasks.backends.RUNTIMES` (``'onnxruntime'``,
            ``'executorch'``, ``'openvino'``); None: from ``weights``' suffix
            (``.onnx`` -> onnxruntime, ``.pte`` -> executorch, ``.xml`` -> openvino).
        threads (int, optional): The runtime's intra-op threads (None: all cores).
            PyTorch's are ``torch.set_num_threads``'.

    Attributes:
        task (str): ``'detection'`` or ``'segmentation'``.
        class_names (tuple): The model's classes: from the checkpoint's
            ``dataset_meta``, else the config's test dataset, else ``class_<i>``.
        palette (list[tuple]): A (B, G, R) colour per class: the dataset's, else
            generated.
        skipped (list[tuple]): ``(path, reason)`` of each file of a folder the last
            call could not read.

    Raises:
        ValueError: For an unknown model name (close names listed), a checkpoint that
            does not fit the config (keys named, config suggested), a config that is
            neither a detector nor a segmentor, or a bad device.
    """

    def __init__(self, model: str, weights: Optional[str] = None, device: str = 'cpu',
                 score_thr: float = 0.3, batch_size: int = 1,
                 backend: Optional[str] = None, threads: Optional[int] = None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
        if not 0.0 <= score_thr <= 1.0:
            raise ValueError(f'score_thr must be in [0, 1], got {score_thr!r}')
        self.batch_size = batch_size
        self.device = _check_device(device)
        self.config = resolve_config(model)
        self.cfg = load_config(self.config)
        self.name = (Path(self.config).stem if isinstance(self.config, str) else
                     Path(self.cfg.filename or 'config').stem)
        self.backend = choose_backend(backend, weights, device)
        if self.backend == PYTORCH:
            self._init_pytorch(weights)
        else:
            self._init_backend(weights, threads)
        self.class_names, self.palette = classes_and_palette(
            self.cfg, self._meta, num_classes(self.model, self.task))
        self._preprocess = Preprocessor(self.cfg, self.model, self.task)
        self._head_score_thr = None  # the config's own, once read
        self.score_thr = score_thr
        self.skipped: List[Tuple[str, str]] = []

    def _init_backend(self, weights: str, threads: Optional[int]) -> None:
        net = build_model(self.cfg, init_weights=False)  # preprocessing, post-process
        self.task = task_of_model(net, self._config_name, _WHAT)
        self.weights = weights
        self.model = BackendModel(weights, revert_sync_batchnorm(net), threads,
                                  backend=self.backend)
        names = self.model.metadata.get('class_names')
        self._meta = {'dataset_meta': {'classes': names}} if names else {}

    def _init_pytorch(self, weights: Optional[str]) -> None:
        # read first: a missing file or a bad address fails before the model is built
        loaded = load_weights(weights) if weights is not None else None
        net = build_model(self.cfg, init_weights=weights is None)
        self.task = task_of_model(net, self._config_name, _WHAT)
        meta = {}
        if weights is None:
            warnings.warn(f'{self.name}: no weights given, so the model has '
                          'random weights and its predictions mean nothing; pass '
                          'weights=CHECKPOINT', stacklevel=2)
        else:
            meta = load_into(net, weights, self.config, loaded=loaded)
        self.weights = weights
        self.model = revert_sync_batchnorm(net).to(self.device).eval()
        self._meta = meta

    @property
    def _config_name(self) -> str:
        return Path(self.config).name if isinstance(self.config, str) else 'the config'

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({self.name!r}, task={self.task!r}, '
                f'weights={self.weights!r}, backend={self.backend!r}, '
                f'device={str(self.device)!r}, '
                f'score_thr={self.score_thr}, batch_size={self.batch_size})')

    # -- the score threshold ------------------------------------------------------------
    @property
    def score_thr(self) -> float:
        """Detections scoring below it are dropped."""
        return self._score_thr

    @score_thr.setter
    def score_thr(self, value: float) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f'score_thr must be in [0, 1], got {value!r}')
        self._score_thr = float(value)
        head = getattr(self.model, 'bbox_head', None)
        test_cfg = getattr(head, 'test_cfg', None)
        if self.task != 'detection' or not test_cfg or 'score_thr' not in test_cfg:
            return
        # Boxes under the threshold cannot change which boxes above it survive NMS
        # (NMS keeps the higher-scoring box), so filtering them in the head keeps the
        # result and skips their decoding and NMS.
        if self._head_score_thr is None:
            self._head_score_thr = float(test_cfg['score_thr'])
        test_cfg = copy.deepcopy(test_cfg)
        test_cfg['score_thr'] = max(self._head_score_thr, self._score_thr)
        head.test_cfg = test_cfg

    # -- predicting -----------------------------------------------------------------------
    def predict(self, images: Sequence[np.ndarray]) -> List[Result]:
        """Predict on arrays.

        Args:
            images (Sequence[np.ndarray]): BGR ``uint8`` ``HxWx3`` arrays, any sizes
                (other kinds are converted as :func:`to_bgr_uint8` says).

        Returns:
            list: A :class:`DetectionResult` or :class:`SegmentationResult` per image,
            in order, in each image's own pixels.
        """
        if isinstance(images, np.ndarray):
            raise TypeError('predict takes a list of images; for one, pass [image]')
        images = [to_bgr_uint8(img, name=f'images[{i}]') for i, img in enumerate(images)]
        results: List[Optional[Result]] = [None] * len(images)
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start:start + self.batch_size]
                for indices, inputs, samples in self._preprocess(chunk):
                    if self.task == 'detection':
                        outputs = self.model.predict(inputs, samples, rescale=True)
                    else:
                        outputs = self.model.predict(inputs, samples)
                    for i, output in zip(indices, outputs):
                        results[start + i] = self._to_result(output)
        return results

    def _to_result(self, sample) -> Result:
        if self.task == 'segmentation':
            label_map = sample.pred_sem_seg.data[0].cpu().numpy()
            dtype = np.uint8 if len(self.class_names) <= 255 else np.int32
            return SegmentationResult(label_map.astype(dtype), self.class_names)
        instances = sample.pred_instances
        boxes = getattr(instances.bboxes, 'tensor', instances.bboxes)  # box types
        scores = instances.scores.cpu().numpy().astype(np.float32)
        keep = np.flatnonzero(scores >= self._score_thr)
        keep = keep[np.argsort(-scores[keep], kind='stable')]
        return DetectionResult(
            boxes=boxes.cpu().numpy()[keep].astype(np.float32).reshape(-1, 4),
            scores=scores[keep],
            labels=instances.labels.cpu().numpy()[keep].astype(np.int64),
            class_names=self.class_names)

    def draw(self, image: np.ndarray, result: Result, alpha: float = 0.5) -> np.ndarray:
        """Draw ``result`` on a copy of ``image`` (the image it was predicted from).

        Args:
            image (np.ndarray): BGR ``uint8`` ``HxWx3``.
            result: What :meth:`predict` gave for it.
            alpha (float): Segmentation only: weight of the class colours.

        Returns:
            np.ndarray: A new BGR ``uint8`` image of the same size: boxes and
            ``name score`` labels, or the label map blended in with class names.
        """
        image = to_bgr_uint8(image, name='image')
        if isinstance(result, DetectionResult):
            return draw_detections(image, result, self.palette)
        if isinstance(result, SegmentationResult):
            return draw_segmentation(image, result, self.palette, alpha=alpha)
        raise TypeError(f'cannot draw a {type(result).__name__}')

    # -- the front door -------------------------------------------------------------------
    def __call__(self, inputs, out_dir: Optional[str] = None, draw: bool = False,
                 progress: bool = True, return_drawn: bool = False, **video_kwargs):
        """Predict on files, arrays or a folder (or a video: see below).

        Args:
            inputs: An image path, a numpy array (BGR, as OpenCV gives), a list of
                either, or a folder (its images, :func:`list_images`). A video file
                (``.mp4 .avi .mov .mkv .webm``) or a webcam index (int) goes to
                ``mobilenet_tasks.apis.video.run_video(self, inputs, out_dir=...,
                draw=..., progress=..., **video_kwargs)`` and returns what it returns.
            out_dir (str, optional): With ``draw``, where the drawn images go: the
                input's stem + ``.jpg`` for JPEG inputs, else + ``.png``; arrays as
                ``array_<i>.png`` (i: position in ``inputs``); a repeated name gets
                ``_1``, ``_2``... Unused without ``draw``.
            draw (bool): Draw each result (:meth:`draw`) and write it to ``out_dir``.
            progress (bool): Show a progress bar (tqdm) for more than one image.
            return_drawn (bool): Also return the drawn images (draws even without
                ``draw``): ``(results, drawn)``.

        Returns:
            list: The results, in input order, each with ``source`` set (the path, or
            ``array_<i>``); ``(results, drawn images)`` with ``return_drawn``.

        Raises:
            InputError: A missing, unreadable or corrupt file given by name (in a
                list too; missing ones are found before anything runs), a bad array,
                or a missing or empty folder. In a folder, files
                that cannot be read are skipped with a warning naming each, listed in
                :attr:`skipped`, and the run goes on.
            ValueError: ``draw`` with neither ``out_dir`` nor ``return_drawn``.
        """
        if _is_video(inputs):
            from .video import run_video
            return run_video(self, inputs, out_dir=out_dir, draw=draw,
                             progress=progress, **video_kwargs)
        if video_kwargs:
            raise TypeError(f'unexpected arguments {sorted(video_kwargs)} (they are for '
                            'video inputs only)')
        if draw and out_dir is None and not return_drawn:
            raise ValueError('draw=True needs out_dir (to write the drawn images) or '
                             'return_drawn=True (to get them back)')
        items, folder = _collect(inputs)
        self.skipped = []
        results, drawn = [], []
        names = _OutputNames()
        if draw and out_dir is not None:
            os.makedirs(out_dir, exist_ok=True)
        with tqdm(total=len(items), disable=not (progress and len(items) > 1),
                  desc='inference', unit='img', dynamic_ncols=True) as bar:
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                kept, images = self._load(chunk, skip_bad=folder is not None)
                for item, image, result in zip(kept, images, self.predict(images)):
                    result.source = item.source
                    results.append(result)
                    if draw or return_drawn:
                        canvas = self.draw(image, result)
                        if draw and out_dir is not None:
                            _write_image(os.path.join(out_dir, names.take(item)),
                                         canvas)
                        if return_drawn:
                            drawn.append(canvas)
                bar.update(len(chunk))
        if self.skipped:
            shown = [os.path.relpath(path, folder) for path, _ in self.skipped[:10]]
            more = (f' and {len(self.skipped) - len(shown)} more'
                    if len(self.skipped) > len(shown) else '')
            warnings.warn(f'{folder}: skipped {len(self.skipped)} of {len(items)} '
                          f'images that could not be read: {", ".join(shown)}{more} '
                          '(see Inferencer.skipped)', stacklevel=2)
        return (results, drawn) if return_drawn else results

    def _load(self, chunk: list, skip_bad: bool):
        """The chunk's images; a file that cannot be read raises, or with ``skip_bad``
        is warned about, recorded in ``skipped`` and left out."""
        kept, images = [], []
        for item in chunk:
            if item.array is not None:
                image = item.array
            else:
                try:
                    image = read_image(item.path)
                except InputError as e:
                    if not skip_bad:
                        raise
                    warnings.warn(f'skipped {e}', stacklevel=3)
                    self.skipped.append((item.path, str(e)))
                    continue
            kept.append(item)
            images.append(image)
        return kept, images


# -- inputs -------------------------------------------------------------------------------
@dataclass
class _Item:
    source: str  # the path, or 'array_<i>'
    path: Optional[str] = None
    array: Optional[np.ndarray] = None


def _is_video(inputs) -> bool:
    if isinstance(inputs, int) and not isinstance(inputs, bool):
        return True  # a webcam index
    return (isinstance(inputs, (str, os.PathLike)) and is_video_file(inputs)
            and not os.path.isdir(inputs))


def _collect(inputs) -> Tuple[List[_Item], Optional[str]]:
    """The items to run and, for a folder, the folder. Files named one by one must
    exist (checked before anything runs); arrays are converted here."""
    if isinstance(inputs, (str, os.PathLike)):
        path = os.fspath(inputs)
        if os.path.isdir(path):
            return [_Item(p, path=p) for p in list_images(path)], path
        inputs = [path]
    elif isinstance(inputs, np.ndarray):
        inputs = [inputs]
    elif not isinstance(inputs, (list, tuple)):
        raise InputError(f'inputs must be an image path, a folder, a numpy array or a '
                         f'list of paths and arrays; got {type(inputs).__name__}')
    items = []
    for i, entry in enumerate(inputs):
        if isinstance(entry, np.ndarray):
            name = f'array_{i}'
            items.append(_Item(name, array=to_bgr_uint8(entry, name=name)))
        elif isinstance(entry, (str, os.PathLike)):
            path = os.fspath(entry)
            if os.path.isdir(path) or is_video_file(path):
                raise InputError(f'{path}: a list holds image files and arrays; pass a '
                                 'folder or a video on its own')
            if not os.path.isfile(path):
                raise InputError(f'{path}: no such file; check the path')
            items.append(_Item(path, path=path))
        else:
            raise InputError(f'inputs[{i}]: expected an image path or a numpy array, '
                             f'got {type(entry).__name__}')
    return items, None


class _OutputNames:
    """File names of drawn images: the input's stem + ``.jpg`` (JPEG inputs) or
    ``.png``; arrays ``array_<i>.png``; repeats get ``_1``, ``_2``..."""

    def __init__(self):
        self._used = set()

    def take(self, item: _Item) -> str:
        if item.path is None:
            stem, ext = item.source, '.png'
        else:
            path = Path(item.path)
            stem = path.stem
            ext = '.jpg' if path.suffix.lower() in ('.jpg', '.jpeg') else '.png'
        name, n = stem + ext, 0
        while name in self._used:
            n += 1
            name = f'{stem}_{n}{ext}'
        self._used.add(name)
        return name


def _write_image(path: str, image: np.ndarray) -> None:
    ok, data = cv2.imencode(Path(path).suffix, image)
    if not ok:
        raise OSError(f'{path}: OpenCV could not encode the drawn image')
    data.tofile(path)  # unlike cv2.imwrite, any file name


# -- the device ---------------------------------------------------------------------
def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}") from e
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise ValueError(f'device={device!r} but CUDA is not available to this '
                             "torch (no GPU, or a CPU-only build); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f'device={device!r} but there are only '
                             f'{torch.cuda.device_count()} CUDA devices')
    elif dev.type != 'cpu':
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    return dev
