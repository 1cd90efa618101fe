"""The choices of int8 quantization, importable before torch and onnxruntime: the
library (:mod:`.calibration`, :mod:`.quantize`) and the tool's parser
(``tools/deployment/quantize_onnx.py``, which answers ``--help`` at once) read them
here."""

#: Calibration methods (name -> onnxruntime ``CalibrationMethod`` member name).
METHODS = {'minmax': 'MinMax', 'percentile': 'Percentile', 'entropy': 'Entropy'}
#: Percentile of ``|x|`` the ``percentile`` method keeps.
PERCENTILE = 99.99
#: The dataset splits calibration images may come from.
SPLITS = ('train', 'val', 'test')
#: Activation types (name -> onnxruntime ``QuantType`` member name).
ACTIVATION_TYPES = {'uint8': 'QUInt8', 'int8': 'QInt8'}
#: NNCF quantization presets of the OpenVINO int8 path (``nncf.QuantizationPreset``
#: member names, lower case): ``mixed`` symmetric weights and asymmetric activations,
#: ``performance`` both symmetric.
OPENVINO_PRESETS = ('mixed', 'performance')
#: ExecuTorch int8: parts of a model that can stay float
#: (:mod:`.executorch_export`), and the ways h-swish can run.
FLOAT_PARTS = ('se', 'head', 'stem')
HSWISH_MODES = ('float', 'int8')
#: ExecuTorch int8: the activation observers (torchao ``HistogramObserver``,
#: ``MinMaxObserver``).
ACTIVATION_OBSERVERS = ('histogram', 'minmax')

__all__ = ['METHODS', 'PERCENTILE', 'SPLITS', 'ACTIVATION_TYPES', 'OPENVINO_PRESETS',
           'FLOAT_PARTS', 'HSWISH_MODES', 'ACTIVATION_OBSERVERS']
