"""Calibration for post-training quantization: the images (a folder, files, or a
split of the config's dataset), preprocessed as the inferencer preprocesses them, and
onnxruntime's calibrators run on them (:mod:`.quantize` says why each choice)."""
import contextlib
import io
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from mobilenet_tasks.apis.inputs import InputError, is_image_file, read_image
from mobilenet_tasks.apis.preprocess import Preprocessor
from mobilenet_tasks.datasets.checks import check_data_files
from mobilenet_tasks.utils.config import build_model, load_config
from mobilenet_tasks.utils.task import task_of_model

from .onnx_graph import QuantizationError
from .options import METHODS, SPLITS

PathLike = Union[str, os.PathLike]

#: Histogram bins of the ``entropy`` method (the range searched for the threshold).
ENTROPY_BINS = 2048


# -- calibration images ------------------------------------------------------------
def _spread(paths: Sequence[str], num: Optional[int]) -> List[str]:
    """``num`` paths evenly spaced over ``paths`` (all of them if fewer or None)."""
    if num is None or len(paths) <= num:
        return list(paths)
    idx = np.unique(np.linspace(0, len(paths) - 1, num).round().astype(int))
    return [paths[i] for i in idx]


def _folder_images(folder: PathLike) -> List[str]:
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f'{folder}: no such folder of calibration images; check the '
                         'path')
    if not folder.is_dir():
        raise InputError(f'{folder}: not a folder; pass a folder of calibration images')
    images = sorted(str(p) for p in folder.rglob('*') if p.is_file()
                    and is_image_file(p))
    if not images:
        raise InputError(f'{folder}: no images in it or its subfolders; calibration '
                         'needs images of the kind the model will see (e.g. '
                         'leftImg8bit/val of the dataset)')
    return images


def _split_images(cfg, split: str) -> List[str]:
    """The image files of a split of the config's dataset, as the dataset lists them."""
    from mmengine.registry import DATASETS, init_default_scope
    if split not in SPLITS:
        raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
    loader = f'{split}_dataloader'
    if not isinstance(cfg.get(loader), dict) or 'dataset' not in cfg[loader]:
        raise QuantizationError(f'the config has no {loader}.dataset to take '
                                'calibration images from; pass a folder of images')
    check_data_files(cfg, loaders=(loader, ))
    init_default_scope(cfg.get('default_scope', 'mobilenet_tasks'))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        dataset = DATASETS.build(cfg[loader]['dataset'])
    paths = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        path = info.get('img_path')
        if path is None:
            raise QuantizationError(f'{type(dataset).__name__} gives no img_path for '
                                    'its images; pass a folder of images')
        paths.append(path)
    if not paths:
        raise InputError(f'the {split} split of the config lists no images; pass a '
                         'folder of images')
    return paths


def calibration_images(config=None, images: Union[PathLike, Sequence[PathLike],
                                                  None] = None,
                       split: str = 'train', num_images: Optional[int] = 32
                       ) -> Tuple[List[str], str]:
    """``(image paths, description of their source)``.

    Args:
        config (str | Config): The model's config (for ``split``).
        images: A folder (searched recursively: the Cityscapes layout has city
            folders) or a list of image files. None: the config's ``split``.
        split (str): ``'train'``, ``'val'`` or ``'test'``: the dataset of
            ``{split}_dataloader``.
        num_images (int, optional): At most this many, evenly spaced over what was
            found (deterministic, and over the whole split rather than its first
            city). None: all.

    Raises:
        InputError: A missing folder or file, a folder without images.
        DatasetNotFoundError: The config's dataset is not on disk.
    """
    if num_images is not None and num_images < 1:
        raise ValueError(f'num_images must be at least 1, got {num_images}')
    if images is not None:
        if isinstance(images, (str, os.PathLike)):
            paths, source = _folder_images(images), f'folder {images}'
        else:
            paths = [os.fspath(p) for p in images]
            if not paths:
                raise InputError('the list of calibration images is empty')
            for p in paths:
                if not os.path.isfile(p):
                    raise InputError(f'{p}: no such image file; check the path')
            source = f'{len(paths)} given files'
    else:
        if config is None:
            raise ValueError('pass a config (its dataset gives calibration images) or '
                             'images')
        cfg = load_config(config)
        paths = _split_images(cfg, split)
        name = config if isinstance(config, str) else (cfg.filename or 'the config')
        source = f'the {split} split of {name}'
    return _spread(paths, num_images), source


class ImageCalibrationReader:
    """onnxruntime ``CalibrationDataReader`` over image files, preprocessed as the
    inferencer preprocesses them (one image a batch).

    All images are read and preprocessed when the reader is made, so a wrong image or a
    size the model does not take fails at once, naming the file, before any
    calibration runs.

    Args:
        image_paths (Sequence[str]): Image files.
        config (str | Config): The model's config (test pipeline, data preprocessor).
        input_name (str): The ONNX model's input.
        input_size (tuple[int, int], optional): ``(H, W)`` of a static model: every
            preprocessed image must have it. None: any size (dynamic model).
        task (str, optional): The ONNX model's task (its metadata), checked against
            the config's.

    Raises:
        QuantizationError: A preprocessed size other than ``input_size``, or a config
            of another task.
        InputError: An image that cannot be read.
    """

    def __init__(self, image_paths: Sequence[str], config, input_name: str = 'input',
                 input_size: Optional[Sequence[int]] = None,
                 task: Optional[str] = None):
        cfg = load_config(config)
        model = build_model(cfg, init_weights=False)  # only its data preprocessor
        config_task = task_of_model(model)
        if task is not None and task != config_task:
            raise QuantizationError(f'the model is a {task} model but the config '
                                    f'a {config_task} one; pass the config it was '
                                    'exported from')
        preprocess = Preprocessor(cfg, model, config_task)
        self.input_name = input_name
        self.batches: List[np.ndarray] = []
        for path in image_paths:
            for _, batch, _ in preprocess([read_image(path)]):
                array = batch.cpu().numpy().astype(np.float32)
                size = tuple(array.shape[2:])
                if input_size is not None and size != tuple(input_size):
                    raise QuantizationError(
                        f'{path}: the config\'s test preprocessing gives a '
                        f'{size[0]}x{size[1]} input, but the model was exported '
                        f'for {input_size[0]}x{input_size[1]} only (static shape). '
                        f'Export it at that size (--shape {size[0]} {size[1]}; ONNX '
                        'segmentation also --dynamic), or pass the config whose test '
                        'resize gives the exported size.')
                self.batches.append(array)
        self._next = 0

    def __len__(self) -> int:
        return len(self.batches)

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return {self.input_name: self.batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self):
        self.rewind()
        return iter(lambda: self.get_next(), None)


def _as_ort_reader(reader: ImageCalibrationReader):
    """``reader`` as a subclass instance of onnxruntime's ``CalibrationDataReader``
    (an ABC whose import is kept out of module import time)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):

        def get_next(self):
            return reader.get_next()

        def rewind(self):
            reader.rewind()

    return _Reader()


def calibrate(model, reader: 'ImageCalibrationReader', cache_path: str, method: str,
              percentile: float, tmp_dir: str) -> None:
    """Calibrate ``model`` (a ModelProto) on the reader's images with onnxruntime's
    calibrator for ``method`` and write the tensor ranges to ``cache_path``, in the
    format ``quantize_static(calibration_cache_path=...)`` reads."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    path = os.path.join(tmp_dir, 'calibration_model.onnx')
    onnx.save(model, path)
    options = {}
    if method == 'percentile':
        options = {'percentile': float(percentile), 'symmetric': True}
    elif method == 'entropy':
        # onnxruntime's defaults (128 bins, 128 quantized bins) leave the entropy
        # search a single candidate, the full range: minmax under another name.
        # 2048 bins as TensorRT's entropy calibrator.
        options = {'num_bins': ENTROPY_BINS, 'num_quantized_bins': 128}
    # the operators quantize_static calibrates by default
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(
        path, op_types, augmented_model_path=os.path.join(tmp_dir, 'augmented.onnx'),
        calibrate_method=getattr(CalibrationMethod, METHODS[method]),
        extra_options=options)
    reader.rewind()
    with contextlib.redirect_stdout(io.StringIO()):  # histogram progress messages
        calibrator.collect_data(_as_ort_reader(reader))
        ranges = calibrator.compute_data()
    del calibrator
    save_tensors_data(ranges, cache_path)
