"""One inferencer for our detectors and segmenters: images in, numpy results out.

Compared with mmdet's ``DetInferencer`` / mmseg's ``MMSegInferencer``: the same model,
the same predictions (``test_step`` through the config's test pipeline, proven in
``tests/test_apis/test_inferencer.py``), but preprocessing on whole batches instead of
an mmcv pipeline per image (:mod:`.preprocess`), drawing with OpenCV instead of
matplotlib (:mod:`.draw`), weights loaded strictly, and inputs checked with messages
that name the file.
"""
import copy
import difflib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DATASETS
from tqdm import tqdm

from mobilenet_tasks.utils.config import build_model, load_config
from mobilenet_tasks.utils.model_index import ROOT, load_model_index
from .draw import draw_detections, draw_segmentation, generate_palette
from .inputs import (InputError, is_video_file, list_images, read_image,
                     to_bgr_uint8)
from .preprocess import Preprocessor
from .results import DetectionResult, SegmentationResult

Result = Union[DetectionResult, SegmentationResult]
_MAX_KEYS_SHOWN = 3  # keys named per kind of checkpoint mismatch


class Inferencer:
    """Run a detection or segmentation config on images, arrays or folders.

    Args:
        model (str): A config file, or a ``Name`` of ``model-index.yml`` (e.g.
            ``'ssdlite_v3_large_demo'``).
        weights (str, optional): A checkpoint: mmengine's (``tools/train.py``) or a
            converter's ``{'state_dict', 'meta'}``, loaded strictly; or an ``.onnx``
            file exported from the config (``tools/deployment/export_onnx.py``, float
            or int8), run by onnxruntime. None: random weights (with a warning), for
            trying the pipeline only.
        device (str): ``'cpu'`` or ``'cuda'`` / ``'cuda:N'``.
        score_thr (float): Detections scoring below it are dropped (in the head, before
            NMS, where it is above the config's own ``score_thr``: the same boxes,
            faster). Unused for segmentation.
        batch_size (int): Images per forward pass.
        backend (str, optional): ``'pytorch'`` or ``'onnxruntime'``; None: from
            ``weights`` (``.onnx`` -> onnxruntime).
        threads (int, optional): onnxruntime's intra-op threads (None: all cores).
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
        self.backend = _check_backend(backend, weights, device)
        if self.backend == 'onnxruntime':
            self._init_onnx(weights, threads)
        else:
            self._init_pytorch(weights)
        self.class_names, self.palette = _classes_and_palette(
            self.cfg, self._meta, _num_classes(self.model, self.task))
        self._preprocess = Preprocessor(self.cfg, self.model, self.task)
        self._head_score_thr = None  # the config's own, once read
        self.score_thr = score_thr
        self.skipped: List[Tuple[str, str]] = []

    def _init_onnx(self, weights: str, threads: Optional[int]) -> None:
        from mobilenet_tasks.deployment import ONNXRuntimeModel
        net = build_model(self.cfg, init_weights=False)  # preprocessing, post-process
        self.task = _task_of(net, self.config)
        self.weights = weights
        self.model = ONNXRuntimeModel(weights, revert_sync_batchnorm(net), threads)
        names = self.model.metadata.get('class_names')
        self._meta = {'dataset_meta': {'classes': names}} if names else {}

    def _init_pytorch(self, weights: Optional[str]) -> None:
        state_dict, meta = (None, {}) if weights is None else load_weights(weights)
        net = build_model(self.cfg, init_weights=weights is None)
        self.task = _task_of(net, self.config)
        if state_dict is None:
            warnings.warn(f'{self.name}: no weights given, so the model has '
                          'random weights and its predictions mean nothing; pass '
                          'weights=CHECKPOINT', stacklevel=2)
        else:
            check_state_dict(net, state_dict, meta, weights, self.config)
            net.load_state_dict(state_dict, strict=True)
        self.weights = weights
        self.model = revert_sync_batchnorm(net).to(self.device).eval()
        self._meta = meta

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
            warnings.warn(f'{folder}: skipped {len(self.skipped)} of {len(items)} '
                          'images that could not be read (see Inferencer.skipped)',
                          stacklevel=2)
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


# -- model, weights, classes ------------------------------------------------------------
def resolve_config(model) -> Union[str, Config]:
    """A config path for ``model``: a config file, or a ``model-index.yml`` Name.

    Raises:
        ValueError: Neither; the message lists the closest names.
    """
    if isinstance(model, Config):
        return model
    text = os.fspath(model)
    if os.path.isfile(text):
        return text
    try:
        names = {entry['Name']: entry['Config'] for entry in load_model_index()}
    except FileNotFoundError:
        names = {}
    if text in names:
        return names[text]
    looks_like_path = text.endswith('.py') or os.sep in text
    what = f'no config file {text}' if looks_like_path else (
        f'{text!r} is neither a config file nor a model name of model-index.yml')
    close = difflib.get_close_matches(Path(text).stem if looks_like_path else text,
                                      names, n=5, cutoff=0.6)
    if close:
        hint = f'close names: {", ".join(close)}'
    elif names:
        hint = (f'model-index.yml lists {len(names)} names, such as '
                f'{", ".join(sorted(names)[:4])}')
    else:
        hint = f'no model-index.yml at {ROOT}: pass a config file'
    raise ValueError(f'{what}; {hint}')


def load_weights(path) -> Tuple[dict, dict]:
    """``(state_dict, meta)`` of a checkpoint file (``weights_only`` loading; a
    DataParallel ``module.`` prefix removed)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'weights {path}: no such file')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unpickling error)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f'weights {path}: cannot load it as a checkpoint ({reason})'
                         ) from e
    meta = {}
    if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
        meta = ckpt.get('meta') or {}
        ckpt = ckpt['state_dict']
    if not isinstance(ckpt, dict) or not ckpt or not all(
            isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise ValueError(f'weights {path}: holds no state dict of tensors (a checkpoint '
                         "is a state dict, or a dict with one under 'state_dict')")
    if all(k.startswith('module.') for k in ckpt):
        ckpt = {k[len('module.'):]: v for k, v in ckpt.items()}
    return ckpt, meta if isinstance(meta, dict) else {}


def check_state_dict(model: torch.nn.Module, state_dict: dict, meta: dict, weights,
                     config) -> None:
    """Raise a ValueError naming what differs if ``state_dict`` does not load strictly
    into ``model``, with the config to use where the checkpoint says."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state_dict
               and not k.endswith('num_batches_tracked')]  # BN fills those in
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [k for k in expected
              if k in state_dict and tuple(state_dict[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f'{len(missing)} keys of the model missing from it '
                     f'({_first(missing)})')
    if unexpected:
        parts.append(f'{len(unexpected)} keys the model does not have '
                     f'({_first(unexpected)})')
    if shapes:
        shown = ', '.join(f'{k}: {tuple(state_dict[k].shape)} in the checkpoint, '
                          f'{expected[k]} in the model'
                          for k in shapes[:_MAX_KEYS_SHOWN])
        more = f', and {len(shapes) - _MAX_KEYS_SHOWN} more' if len(
            shapes) > _MAX_KEYS_SHOWN else ''
        parts.append(f'{len(shapes)} tensors of another shape ({shown}{more})')
    name = config if isinstance(config, str) else 'the config'
    hint = _suggest_config(state_dict, meta, model, shapes, missing, unexpected)
    raise ValueError(f'weights {os.fspath(weights)} do not match {name}: '
                     f'{"; ".join(parts)}. {hint}')


def _first(keys: List[str]) -> str:
    more = f', ... {len(keys) - _MAX_KEYS_SHOWN} more' if len(
        keys) > _MAX_KEYS_SHOWN else ''
    return ', '.join(keys[:_MAX_KEYS_SHOWN]) + more


def _suggest_config(state_dict, meta, model, shapes, missing, unexpected) -> str:
    """What the user should do: the checkpoint's own config if its meta names one."""
    named = meta.get('config')  # our converters
    if not named and isinstance(meta.get('experiment_name'), str):
        # tools/train.py (mmengine): '<config stem>_<YYYYMMDD_HHMMSS>'
        stem = re.sub(r'_\d{8}_\d{6}$', '', meta['experiment_name'])
        if (ROOT / 'configs' / f'{stem}.py').is_file():
            named = f'configs/{stem}.py'
    if named:
        return f'The checkpoint was made for {named}: pass model={named!r}.'
    prefixes = {k.split('.', 1)[0] for k in state_dict}
    if 'decode_head' in prefixes and not hasattr(model, 'decode_head'):
        return ('It holds a segmentation model (decode_head.*): pass a segmentation '
                'config.')
    if 'bbox_head' in prefixes and not hasattr(model, 'bbox_head'):
        return 'It holds a detection model (bbox_head.*): pass a detection config.'
    if prefixes <= {'backbone', 'head'}:
        return ('It holds a backbone (or classifier), not a whole model: start a '
                "training from it with model.backbone.init_cfg=dict(type='Pretrained', "
                "checkpoint=..., prefix='backbone.').")
    heads = ('bbox_head.', 'decode_head.', 'auxiliary_head.')
    if shapes and not (missing or unexpected) and all(k.startswith(heads)
                                                      for k in shapes):
        return ('Only head tensors differ: the checkpoint predicts another number of '
                'classes; pass the config it was trained with (or one with its '
                'num_classes).')
    return 'Pass the config the checkpoint was trained with.'


BACKENDS = ('pytorch', 'onnxruntime')


def _check_backend(backend: Optional[str], weights, device: str) -> str:
    is_onnx = isinstance(weights, (str, os.PathLike)) and os.fspath(
        weights).lower().endswith('.onnx')
    if backend is None:
        backend = 'onnxruntime' if is_onnx else 'pytorch'
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'onnxruntime' and not is_onnx:
        raise ValueError(f"backend='onnxruntime' runs an exported .onnx file, got "
                         f'weights={weights!r}: export one with '
                         'tools/deployment/export_onnx.py and pass it as weights')
    if backend == 'pytorch' and is_onnx:
        raise ValueError(f"{weights} is an ONNX model: use backend='onnxruntime' (or "
                         'leave backend unset)')
    if backend == 'onnxruntime' and str(device) != 'cpu':
        raise ValueError(f"backend='onnxruntime' runs on the CPU here, got device "
                         f'{device!r}')
    return backend


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


def _task_of(model, config) -> str:
    from mmdet.models.detectors import BaseDetector
    from mmseg.models.segmentors import BaseSegmentor
    if isinstance(model, BaseDetector):
        return 'detection'
    if isinstance(model, BaseSegmentor):
        return 'segmentation'
    name = Path(config).name if isinstance(config, str) else 'the config'
    raise ValueError(f'{name} builds a {type(model).__name__}, neither an mmdet detector '
                     'nor an mmseg segmentor: the Inferencer runs detection and '
                     'segmentation configs')


def _num_classes(model, task: str) -> int:
    if task == 'segmentation':
        return int(model.decode_head.num_classes)
    head = getattr(model, 'bbox_head', None)
    if head is None and hasattr(model, 'roi_head'):  # two-stage detectors
        head = model.roi_head.bbox_head
    return int(head.num_classes)


def _dataset_metainfo(cfg) -> dict:
    """The test dataset's metainfo as the dataset would hold it, without building it:
    the class's ``METAINFO`` updated by the config's ``metainfo``."""
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset') or {}
    kind = dataset.get('type')
    try:
        with DATASETS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
            cls = registry.get(kind) if isinstance(kind, str) else kind
    except Exception:  # noqa: BLE001 (an unregistered or unimportable dataset)
        cls = None
    info = dict(getattr(cls, 'METAINFO', None) or {})
    override = dict(dataset.get('metainfo') or {})
    if 'classes' in override and 'palette' not in override:
        info.pop('palette', None)  # the class's palette is for its own classes
    info.update(override)
    return info


def _classes_and_palette(cfg, meta: dict, num_classes: int):
    """Class names (checkpoint's ``dataset_meta``, else the config's dataset, else
    ``class_<i>``) and a BGR palette (theirs, else generated)."""
    sources = [('the checkpoint', {k.lower(): v for k, v in
                                   (meta.get('dataset_meta') or {}).items()}),
               ('the config', _dataset_metainfo(cfg))]
    classes, palette = None, None
    for where, info in sources:
        names = info.get('classes')
        if names is None:
            continue
        if len(names) == num_classes:
            classes, palette = tuple(str(n) for n in names), info.get('palette')
            break
        warnings.warn(f'{where} names {len(names)} classes but the model predicts '
                      f'{num_classes}; ignoring its names', stacklevel=3)
    if classes is None:
        classes = tuple(f'class_{i}' for i in range(num_classes))
    if isinstance(palette, (list, tuple)) and len(palette) >= num_classes:
        palette = [tuple(int(c) for c in rgb[::-1]) for rgb in palette[:num_classes]]
    else:  # none, 'random', or too short
        palette = generate_palette(num_classes)
    return classes, palette
