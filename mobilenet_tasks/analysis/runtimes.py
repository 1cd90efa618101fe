"""The benchmark's file backends, one table (:data:`FILE_BACKENDS`): for each backend
label, how its model file is made from the module timed (by the project's exporters,
:mod:`.build`) and which runtime of :data:`mobilenet_tasks.backends.RUNTIMES` opens it,
with which options.

=========  ===========  ======================================================  =========
label      runtime      file                                                    int8 of
=========  ===========  ======================================================  =========
ort        onnxruntime  ``export_loaded`` ONNX (opset 17, raw outputs)          -
ort-int8   onnxruntime  ``quantize_model`` of that graph (QDQ, the project's)   ort
et         executorch   ``export_executorch_loaded`` ``.pte`` (XNNPACK)         -
et-int8    executorch   the same, PT2E int8 with ``XNNPACKQuantizer``           et
ov         openvino     the ``ort`` ONNX file itself, read by OpenVINO          -
ov-int8    openvino     ``quantize_openvino`` (NNCF) of that ONNX file: an IR   ov
=========  ===========  ======================================================  =========

:class:`ModelFiles` makes one model's files, each once (the ONNX export serves four
backends), and keeps a failure as its reason, so that the benchmark records it in the
model's ``skipped`` and goes on.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .build import (Built, export_executorch, export_onnx, open_session,
                    quantize_int8, quantize_openvino_int8)


@dataclass(frozen=True)
class FileBackend:
    runtime: str  # the mobilenet_tasks.backends.RUNTIMES name that opens the file
    file: str  # how the file is made, in the report's words
    make: Callable[['ModelFiles'], dict]  # -> a summary with the file's ``path``
    int8_of: Optional[str] = None  # int8: the fp32 backend it is compared with
    options: Dict[str, object] = field(default_factory=dict)  # open_backend options


class Unavailable(Exception):
    """A backend's file could not be made (the reason is the message)."""


def _reason(error: BaseException) -> str:
    if isinstance(error, (NotImplementedError, Unavailable)):
        text = str(error)
    else:
        text = f'{type(error).__name__}: {error}'
    text = ' '.join(text.split())
    return text if len(text) <= 400 else text[:397] + '...'


class ModelFiles:
    """The model files of one model's backends at one input size, under ``work_dir``.

    Args:
        built: The model (:func:`.build.build`).
        size: ``(H, W)``.
        work_dir: Where the files go.
        images: Returns the calibration images (called once, when int8 needs them).
        log: Progress messages.
    """

    def __init__(self, built: Built, size, work_dir: Path,
                 images: Callable[[], List[str]], log: Callable[[str], None] = print,
                 reuse: bool = False):
        self.reuse = reuse  # open the files an earlier run left, if they are there
        self.built, self.size, self.work_dir = built, tuple(size), Path(work_dir)
        self.stem = f'{built.entry.name.replace(":", "_")}_{size[0]}x{size[1]}'
        self._images, self.log = images, log
        self._made: Dict[str, object] = {}  # key -> summary dict or Unavailable

    def images(self) -> List[str]:
        return self._images()

    def path_for(self, suffix: str) -> Path:
        return self.work_dir / f'{self.stem}{suffix}'

    def make(self, backend: str) -> dict:
        """The summary of ``backend``'s file (``path``...), made on first call.

        Raises:
            Unavailable: It could not be made (now or on an earlier call).
        """
        return self._once(backend, lambda: FILE_BACKENDS[backend].make(self))

    def onnx(self) -> dict:
        """The fp32 ONNX export (``ort``, ``ov``, and the input of both int8 ones)."""
        def export():
            self.log(f'exporting {self.built.entry.name} to ONNX')
            return dict(path=export_onnx(self.built, self.size, self.path_for('.onnx')))
        return self._once('onnx', export)

    def _once(self, key: str, make: Callable[[], dict]) -> dict:
        reused = self.path_for(REUSED_SUFFIX[key]) if key in REUSED_SUFFIX else None
        if (self.reuse and key not in self._made and reused is not None
                and reused.is_file()):
            self.log(f'{self.built.entry.name} {key}: reusing {reused}')
            self._made[key] = dict(path=str(reused), reused=True)
        if key not in self._made:
            try:
                self._made[key] = make()
            except Exception as e:  # noqa: BLE001 - recorded, the benchmark goes on
                self._made[key] = e if isinstance(e, Unavailable) else \
                    Unavailable(_reason(e))
        made = self._made[key]
        if isinstance(made, Unavailable):
            raise made
        return made


#: The file of each made key (``ModelFiles.reuse``): ``ort`` and ``ov`` open the ONNX
#: file.
REUSED_SUFFIX = {'onnx': '.onnx', 'ort-int8': '_int8.onnx', 'et': '.pte',
                 'et-int8': '_int8.pte', 'ov-int8': '_ov_int8.xml'}


def _onnx_file(files: ModelFiles) -> dict:
    return dict(files.onnx())


def _ort_int8(files: ModelFiles) -> dict:
    fp32 = files.onnx()['path']
    files.log(f'quantizing {files.built.entry.name} to int8 (onnxruntime)')
    return quantize_int8(files.built, fp32, str(files.path_for('_int8.onnx')),
                         files.size, files.images())


def _et(int8: bool) -> Callable[[ModelFiles], dict]:
    def make(files: ModelFiles) -> dict:
        files.log(f'exporting {files.built.entry.name} to ExecuTorch'
                  + (' int8' if int8 else ''))
        return export_executorch(files.built, files.size,
                                 files.path_for('_int8.pte' if int8 else '.pte'), int8,
                                 files.images if int8 else None)
    return make


def _ov_int8(files: ModelFiles) -> dict:
    fp32 = files.onnx()['path']
    files.log(f'quantizing {files.built.entry.name} to int8 (NNCF, OpenVINO)')
    return quantize_openvino_int8(files.built, fp32, str(files.path_for('_ov_int8.xml')),
                                  files.size, files.images())


FILE_BACKENDS: Dict[str, FileBackend] = {
    'ort': FileBackend('onnxruntime', 'export_loaded: ONNX opset 17, the raw outputs',
                       _onnx_file, options={'denormals_as_zero': True}),
    'ort-int8': FileBackend('onnxruntime', "quantize_model of the ONNX graph (the "
                            "project's QDQ recipe)", _ort_int8, int8_of='ort',
                            options={'denormals_as_zero': True}),
    'et': FileBackend('executorch', 'export_executorch_loaded: torch.export, lowered '
                      'to XNNPACK, .pte', _et(False)),
    'et-int8': FileBackend('executorch', 'export_executorch_loaded(int8=True): PT2E '
                           'with XNNPACKQuantizer, lowered to XNNPACK', _et(True),
                           int8_of='et'),
    'ov': FileBackend('openvino', 'the same ONNX file as ort, read by OpenVINO',
                      _onnx_file, options={'denormals_as_zero': True}),
    'ov-int8': FileBackend('openvino', 'quantize_openvino: NNCF int8 of the ONNX file, '
                           'an OpenVINO IR', _ov_int8, int8_of='ov',
                           options={'denormals_as_zero': True}),
}


def open_file_backend(backend: str, path: str, threads: int):
    """``path`` opened by ``backend``'s runtime on ``threads`` threads."""
    spec = FILE_BACKENDS[backend]
    return open_session(path, spec.runtime, threads, **spec.options)


def describe() -> Dict[str, dict]:
    """The table for the report: backend -> runtime, file, int8_of, options."""
    return {k: dict(runtime=v.runtime, file=v.file, int8_of=v.int8_of,
                    options=dict(v.options)) for k, v in FILE_BACKENDS.items()}
