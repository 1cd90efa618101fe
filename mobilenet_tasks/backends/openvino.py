"""OpenVINO (CPU plugin) behind the :class:`~.base.Backend` interface.

It opens the OpenVINO IR (``.xml`` with its ``.bin``) that
:mod:`mobilenet_tasks.deployment.openvino_export` writes, and, asked for by name
(``backend='openvino'``), the exported ``.onnx`` files themselves: OpenVINO reads ONNX
directly (``Core.read_model``), the NMS graph (``NonMaxSuppression``, ``If``, ``TopK``)
included.

What is set, and why:

- **Device** ``CPU``, one infer request, ``PERFORMANCE_HINT`` ``LATENCY`` with
  ``NUM_STREAMS`` 1 (one image at a time on all the threads, as onnxruntime's session
  runs), ``INFERENCE_NUM_THREADS`` the thread count when one is given. Threads are not
  pinned to cores (``ENABLE_CPU_PINNING`` off; the latency hint turns it on), as
  onnxruntime's are not: on a machine shared with other processes a pinned thread
  waits for its core (LR-ASPP at 256x512 on one thread of a loaded 2-core machine:
  median 83 ms pinned, 53 ms not).
- **``INFERENCE_PRECISION_HINT`` ``f32``**: on CPUs with AMX or AVX-512 bf16 the plugin
  otherwise runs fp32 models in bf16 (8 bits of mantissa), silently, and the logits no
  longer match PyTorch's or onnxruntime's (the demo LR-ASPP with random weights at
  64x128, on an AMX CPU: max error 9% of the logit scale and 82% argmax agreement in
  bf16, 4e-6 and 100% in f32). int8 models (FakeQuantize nodes) still run their
  quantized parts in int8: the hint sets the precision of what is float.
  ``precision='bf16'`` opts in.
- **Metadata**: for ``.onnx`` the file's ``metadata_props``
  (:func:`~.onnxruntime.read_onnx_metadata`); for ``.xml`` the same keys, stored as the
  same strings in the model's ``rt_info`` under :data:`RT_SECTION`, JSON values decoded
  the same way.
- **Outputs** are named by the model's tensor names, which OpenVINO keeps from the ONNX
  graph (``logits``; ``boxes``, ``scores``, ``labels``; ``cls_score_<i>``,
  ``bbox_pred_<i>``), and copied out of the request's buffers (the next ``run``
  overwrites them).
"""
import os
import xml.etree.ElementTree as ElementTree
from collections import Counter
from typing import Dict, List, Optional

from .base import Backend, BackendError, decode_metadata, require

#: The ``rt_info`` section of an IR that holds the exporter's metadata.
RT_SECTION = 'mobilenet_tasks'
#: ``precision`` values (OpenVINO's ``INFERENCE_PRECISION_HINT``).
PRECISIONS = ('f32', 'bf16', 'f16')


def _openvino():
    return require('openvino', 'OpenVINO', 'openvino')


def rt_metadata_strings(ov_model) -> Dict[str, str]:
    """The metadata strings an ``openvino.Model`` holds in its ``rt_info`` section
    :data:`RT_SECTION` (empty if it has none)."""
    if not ov_model.has_rt_info([RT_SECTION]):
        return {}
    section = ov_model.get_rt_info([RT_SECTION]).astype(dict)
    return {key: ov_model.get_rt_info([RT_SECTION, key]).astype(str)
            for key in section}


def set_rt_metadata(ov_model, strings: Dict[str, str]) -> None:
    """Store metadata strings in ``ov_model``'s ``rt_info`` (section
    :data:`RT_SECTION`), where :func:`rt_metadata_strings` reads them."""
    for key, value in strings.items():
        ov_model.set_rt_info(str(value), [RT_SECTION, key])


def metadata_strings(path, ov_model) -> Dict[str, str]:
    """The exporter's metadata as stored (strings): an ``.onnx`` file's
    ``metadata_props``, an IR's ``rt_info`` section (``ov_model``, read from it)."""
    if os.fspath(path).lower().endswith('.onnx'):
        import onnx
        proto = onnx.load(os.fspath(path), load_external_data=False)
        return {prop.key: prop.value for prop in proto.metadata_props}
    return rt_metadata_strings(ov_model)


def all_ops(ov_model):
    """An ``openvino.Model``'s ops in order, those of ``If`` bodies included (after
    their ``If``)."""
    for op in ov_model.get_ordered_ops():
        yield op
        if op.get_type_name() == 'If':
            for i in range(2):
                yield from all_ops(op.get_function(i))


def ir_op_counts(xml_path) -> Counter:
    """Op type -> number of layers of an IR ``.xml`` (those in ``If`` bodies too),
    read from the file itself."""
    root = ElementTree.parse(os.fspath(xml_path)).getroot()
    return Counter(layer.get('type') for layer in root.iter('layer'))


def read_model(path, core=None):
    """``core.read_model(path)`` (an ``.xml`` IR or an ``.onnx`` file) with errors that
    say what is wrong: a missing file, an IR without its ``.bin``, a file OpenVINO
    cannot read."""
    ov = _openvino()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: no such file; {OpenVINO.export_hint}')
    if path.lower().endswith('.xml'):
        weights = os.path.splitext(path)[0] + '.bin'
        if not os.path.isfile(weights):
            raise BackendError(f'{path}: its weights {weights} are missing (an IR is '
                               'the .xml and the .bin next to it); copy both, or '
                               'convert the .onnx again')
    try:
        return (core or ov.Core()).read_model(path)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(f'{path}: OpenVINO cannot read it ({first}); pass an '
                           '.onnx file export_onnx.py wrote or the .xml '
                           'export_openvino.py converted it to') from e


def read_openvino_metadata(path) -> dict:
    """The exporter's metadata of an ``.xml`` IR (its ``rt_info``) or an ``.onnx``
    file (its ``metadata_props``), decoded; the model is read, not compiled."""
    path = os.fspath(path)
    if path.lower().endswith('.onnx'):
        from .onnxruntime import read_onnx_metadata
        return read_onnx_metadata(path)
    return decode_metadata(rt_metadata_strings(read_model(path)))


def compile_options(threads: Optional[int] = None, precision: str = 'f32',
                    denormals_as_zero: bool = False,
                    pin_threads: bool = False) -> Dict[str, str]:
    """The CPU plugin's properties for one latency-bound stream (see the module
    docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    options = {'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1',
               'INFERENCE_PRECISION_HINT': precision,
               'ENABLE_CPU_PINNING': 'YES' if pin_threads else 'NO'}
    if threads:
        options['INFERENCE_NUM_THREADS'] = str(int(threads))
    if denormals_as_zero:
        options['CPU_DENORMALS_OPTIMIZATION'] = 'YES'
    return options


def _tensor_name(port) -> str:
    """A port's tensor name: OpenVINO keeps the ONNX graph's input and output names
    (and writes them into the IR)."""
    return port.get_any_name()


class OpenVINO(Backend):
    """An OpenVINO IR (``.xml`` + ``.bin``) or an ``.onnx`` file, compiled for the CPU.

    Options:
        precision (str): ``INFERENCE_PRECISION_HINT``: ``'f32'`` (default: the fp32
            models' own precision), ``'bf16'`` or ``'f16'`` (faster where the CPU has
            them, at a cost in parity).
        denormals_as_zero (bool): Flush denormals to zero (the benchmark's timing,
            as onnxruntime's option of that name).
        pin_threads (bool): Pin the threads to cores (``ENABLE_CPU_PINNING``, the
            plugin's default for the latency hint); default off, as onnxruntime's
            threads are (see the module docstring).

    Attributes:
        model: The ``openvino.Model`` read from the file.
        compiled: Its ``CompiledModel``.
        request: The one ``InferRequest`` every :meth:`run` uses.
    """

    name = 'openvino'
    export_hint = ('export one with tools/deployment/export_onnx.py and convert it '
                   'with tools/deployment/export_openvino.py MODEL.onnx --out '
                   'MODEL.xml (OpenVINO runs the .onnx too)')
    also_opens = ('.onnx', )
    read_metadata = staticmethod(read_openvino_metadata)

    def __init__(self, path, threads: Optional[int] = None, precision: str = 'f32',
                 denormals_as_zero: bool = False, pin_threads: bool = False):
        super().__init__(path, threads)
        ov = _openvino()
        core = ov.Core()
        self.model = read_model(self.path, core)
        if self.path.lower().endswith('.onnx'):
            self.metadata = read_openvino_metadata(self.path)
        else:
            self.metadata = decode_metadata(rt_metadata_strings(self.model))
        self.compiled = core.compile_model(
            self.model, 'CPU',
            compile_options(threads, precision, denormals_as_zero, pin_threads))
        self.request = self.compiled.create_infer_request()
        self.input_names = [_tensor_name(p) for p in self.model.inputs]
        first = self.model.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else None
                                 for d in first)
        self.output_names = [_tensor_name(p) for p in self.compiled.outputs]
        self._output_index = {n: i for i, n in enumerate(self.output_names)}

    def runtime_precisions(self) -> Counter:
        """``(layer type, precision)`` -> number of layers of the compiled model, as
        the CPU plugin runs them (``('Convolution', 'u8')``: an int8 convolution;
        depthwise ones count as ``Convolution``)."""
        out = Counter()
        for op in self.compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            out[(info['layerType'].astype(str),
                 info['runtimePrecision'].astype(str))] += 1
        return out

    def run(self, inputs, outputs=None) -> List:
        feed = self._feed(inputs)
        unknown = sorted(set(feed) - set(self.input_names))
        if unknown:
            raise ValueError(f'{self.path} has inputs {self.input_names}, got '
                             f'{unknown}')
        names = list(outputs or self.output_names)
        missing = [n for n in names if n not in self._output_index]
        if missing:
            raise ValueError(f'{self.path} has outputs {self.output_names}, not '
                             f'{missing}')
        self.request.infer(feed)
        return [self.request.get_output_tensor(self._output_index[n]).data.copy()
                for n in names]
