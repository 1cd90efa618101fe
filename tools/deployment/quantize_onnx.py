"""Quantize an exported fp32 ONNX model to int8 (post-training, static, onnxruntime).

    python tools/deployment/quantize_onnx.py FP32.onnx OUT.onnx [--config CONFIG]
        [--images DIR | --split val] [--num-images 32]
        [--method minmax|percentile|entropy] [--percentile 99.99] [--per-tensor]
        [--activation-type uint8|int8] [--reduce-range] [--quantize-postprocessing]
        [--no-preprocess]

Calibration images are read and preprocessed the way the inferencer does it for
CONFIG (default: the config named in the model's metadata): from ``--images DIR``
(searched recursively), else from the ``--split`` of the config's dataset (default
``val``; ``train`` keeps calibration and evaluation images apart). The int8 model
holds only standard ONNX operators (QuantizeLinear / DequantizeLinear around the
float ones) and the fp32 model's metadata plus a ``quantization`` entry, so
``tools/test.py CONFIG OUT.onnx`` evaluates it with the config's metrics. See
``mobilenet_tasks.deployment.quantize`` for what is quantized and why.

Exit status: 0 done; 1 a bad input (missing file, not an ONNX model, no images, a
size mismatch), with a message saying what to do.
"""
import argparse
import logging
import sys
import warnings

# Only argparse and the quantization choices (mobilenet_tasks.deployment.options, no
# torch) here: the rest of mobilenet_tasks.deployment (torch, OpenCV, the models) loads
# in main() once the arguments are parsed, so --help and an argument error answer at
# once.
from mobilenet_tasks.deployment.options import (ACTIVATION_TYPES, METHODS, PERCENTILE,
                                                SPLITS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Post-training static int8 quantization of an exported ONNX model '
        'with onnxruntime, calibrated on dataset images')
    parser.add_argument('model', help='the fp32 .onnx file (export_onnx.py)')
    parser.add_argument('out', help='the int8 .onnx file to write')
    parser.add_argument('--config', default=None,
                        help='the config the model was exported from (default: the '
                        "one named in the model's metadata)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--images', default=None,
                        help='folder of calibration images (recursive)')
    source.add_argument('--split', choices=SPLITS, default='train',
                        help="split of the config's dataset to calibrate on "
                        '(default: train; not the images it is evaluated on)')
    parser.add_argument('--num-images', type=int, default=32,
                        help='calibration images, evenly spaced over what is found '
                        '(default 32; 0: all)')
    parser.add_argument('--method', choices=sorted(METHODS), default='minmax',
                        help='calibration method (default: minmax)')
    parser.add_argument('--percentile', type=float, default=PERCENTILE,
                        help=f'percentile of |x| kept by --method percentile '
                        f'(default {PERCENTILE})')
    parser.add_argument('--per-tensor', action='store_true',
                        help='one scale per weight tensor instead of per channel')
    parser.add_argument('--activation-type', choices=sorted(ACTIVATION_TYPES),
                        default='uint8', help='activation type (default uint8: '
                        "onnxruntime's x86 integer kernels take uint8 activations)")
    parser.add_argument('--reduce-range', action='store_true',
                        help='7-bit weights (x86 CPUs without VNNI, against overflow '
                        'of the 16-bit intermediate sums)')
    parser.add_argument('--quantize-postprocessing', action='store_true',
                        help='also quantize the nodes after the last convolutions '
                        '(softmax, box decoding, NMS, logit resize); default: float')
    parser.add_argument('--no-preprocess', action='store_true',
                        help="skip onnxruntime's quant_pre_process (shape inference "
                        'and graph optimisation)')
    args = parser.parse_args(argv)
    if args.num_images < 0:
        parser.error(f'--num-images must be 0 (all) or positive, got {args.num_images}')
    if not 0 < args.percentile <= 100:
        parser.error(f'--percentile must be in (0, 100], got {args.percentile}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.apis.inputs import InputError
    from mobilenet_tasks.datasets.checks import DatasetNotFoundError
    from mobilenet_tasks.deployment.quantize import QuantizationError, quantize_model
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's advice via logging
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            report = quantize_model(
                args.model, args.out, config=args.config, images=args.images,
                split=args.split, num_images=args.num_images or None,
                method=args.method, percentile=args.percentile,
                per_channel=not args.per_tensor,
                activation_type=args.activation_type, reduce_range=args.reduce_range,
                keep_postprocessing_float=not args.quantize_postprocessing,
                preprocess=not args.no_preprocess)
    except (QuantizationError, InputError, DatasetNotFoundError, FileNotFoundError,
            ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
