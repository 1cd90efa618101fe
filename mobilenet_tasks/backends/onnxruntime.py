"""onnxruntime (CPUExecutionProvider) behind the :class:`~.base.Backend` interface.

Metadata is the ONNX file's ``metadata_props`` (JSON values decoded), written by
:mod:`mobilenet_tasks.deployment.onnx_export`.
"""
import os
from typing import Optional

from .base import Backend, decode_metadata


def read_onnx_metadata(onnx_model) -> dict:
    """The metadata the exporter stored, decoded (JSON values parsed).

    Args:
        onnx_model: A path or an ``onnx.ModelProto``.
    """
    import onnx
    if not isinstance(onnx_model, onnx.ModelProto):
        onnx_model = onnx.load(os.fspath(onnx_model), load_external_data=False)
    return decode_metadata({p.key: p.value for p in onnx_model.metadata_props})


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


class ONNXRuntime(Backend):
    """An ``.onnx`` file in an onnxruntime CPU session.

    Options:
        denormals_as_zero (bool): Flush denormals to zero (the benchmark's timing).
    """

    name = 'onnxruntime'
    export_hint = 'export one with tools/deployment/export_onnx.py'
    read_metadata = staticmethod(read_onnx_metadata)

    def __init__(self, path, threads: Optional[int] = None,
                 denormals_as_zero: bool = False):
        super().__init__(path, threads)
        self.session = cpu_session(self.path, threads, denormals_as_zero)
        self.metadata = read_onnx_metadata(self.path)
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.input_shape = tuple(v if isinstance(v, int) else None
                                 for v in inputs[0].shape)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs, outputs=None):
        return self.session.run(list(outputs or self.output_names), self._feed(inputs))
