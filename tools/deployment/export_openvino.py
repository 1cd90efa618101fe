"""Convert an exported ONNX model to an OpenVINO IR (fp32), or quantize it to an int8
IR with NNCF, and check it against onnxruntime.

    python tools/deployment/export_openvino.py MODEL.onnx --out MODEL.xml [--check]
    python tools/deployment/export_openvino.py MODEL.onnx --out MODEL_int8.xml --int8
        [--config CONFIG] [--images DIR | --split train] [--num-images 32]
        [--preset mixed|performance] [--ignored-types TYPE ...] [--check]

The IR is the ``.xml`` and the ``.bin`` next to it, fp32 weights, with the ONNX file's
metadata in its ``rt_info``: ``tools/test.py CONFIG MODEL.xml`` and the inferencer run
it with OpenVINO. ``--int8`` calibrates on images preprocessed the way the config's test
pipeline does (CONFIG default: the one named in the model's metadata): ``--images DIR``
(recursive), else the ``--split`` of the config's dataset (default ``train``). See
``mobilenet_tasks.deployment.openvino_export`` for what is quantized and why.

``--check`` runs the result and the input model (onnxruntime for an ``.onnx``) on the
same random preprocessed input (standard normal) and prints the max abs difference;
fp32 fails (exit 1) above ``--tolerance`` times the output scale, or if the detections
differ in number or labels; int8 prints its fidelity (the difference relative to the
output scale, and the argmax agreement of segmentation or the fp32 detections found)
on the random input and on up to 4 calibration images, and how many convolutions the
CPU plugin runs in int8. Noise drives the activations outside the ranges calibrated
on images (the demo LR-ASPP: 53% argmax agreement on it, 97% on a street scene not
calibrated on), and the calibration images flatter it, so ``tools/test.py CONFIG
MODEL_int8.xml`` is the measure of int8 accuracy.

Exit status: 0 done; 1 the fp32 check failed; 2 a bad input (missing file, not an ONNX
model, no calibration images, a size mismatch, OpenVINO or NNCF not installed), with a
message saying what to do.
"""
import argparse
import sys
import warnings

# Only argparse and the quantization choices (mobilenet_tasks.deployment.options: no
# torch, no OpenVINO) before the arguments are parsed, so --help answers at once.
from mobilenet_tasks.deployment.options import OPENVINO_PRESETS, SPLITS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an exported ONNX model to an OpenVINO IR (fp32, or int8 '
        'with NNCF) and check it against onnxruntime')
    parser.add_argument('model', help='the fp32 .onnx file (export_onnx.py); with '
                        '--int8 also an fp32 .xml')
    parser.add_argument('--out', required=True,
                        help='the .xml to write (its weights go in the .bin next to '
                        'it)')
    parser.add_argument('--int8', action='store_true',
                        help='post-training int8 quantization with NNCF')
    parser.add_argument('--config', default=None,
                        help="--int8: the config the model was exported from "
                        "(default: the one named in the model's metadata)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--images', default=None,
                        help='--int8: folder of calibration images (recursive)')
    source.add_argument('--split', choices=SPLITS, default='train',
                        help="--int8: split of the config's dataset to calibrate on "
                        '(default: train; not the images it is evaluated on)')
    parser.add_argument('--num-images', type=int, default=32,
                        help='--int8: calibration images, evenly spaced over what is '
                        'found (default 32; 0: all)')
    parser.add_argument('--preset', choices=OPENVINO_PRESETS, default='mixed',
                        help='--int8: NNCF preset (default mixed: asymmetric '
                        'activations)')
    parser.add_argument('--ignored-types', nargs='+', default=[], metavar='TYPE',
                        help='--int8: OpenVINO op types to keep float too (e.g. '
                        'GroupConvolution)')
    parser.add_argument('--check', action='store_true',
                        help='run the result and the input model on the same random '
                        'input and compare')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='--check of fp32: max abs difference allowed, relative '
                        'to the output scale (default 1e-4)')
    parser.add_argument('--threads', type=int, default=None,
                        help="--check: threads of both runtimes (default: theirs)")
    args = parser.parse_args(argv)
    if not args.int8:
        given = [flag for flag, value, default in (
            ('--config', args.config, None), ('--images', args.images, None),
            ('--split', args.split, 'train'), ('--num-images', args.num_images, 32),
            ('--preset', args.preset, 'mixed'),
            ('--ignored-types', args.ignored_types, [])) if value != default]
        if given:
            parser.error(f'{", ".join(given)} only apply with --int8')
    if args.num_images < 0:
        parser.error(f'--num-images must be 0 (all) or positive, got {args.num_images}')
    if args.tolerance <= 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be positive, got {args.threads}')
    return args


def _check_line(report: dict, int8: bool, tolerance: float, reference: str,
                what_input: str, reference_kind: str = 'fp32'):
    """``(line, ok)`` of a :func:`compare_backends` report."""
    runtime = 'onnxruntime' if reference.lower().endswith('.onnx') else 'OpenVINO'
    rel = report['rel_diff']
    if 'num_detections' in report:
        what = (f"{report['num_detections'][1]} detections vs "
                f"{report['num_detections'][0]}, labels "
                f"{'equal' if report['labels_equal'] else 'different'}; max abs diff "
                f"of boxes and scores {report['max_abs_diff']:.3g}")
        if int8:
            what += (f"; {100 * report['matched']:.1f}% of the fp32 detections found "
                     '(same label, IoU >= 0.5)')
        elif report['tied_scores'] and not report['labels_equal']:
            what += (' (tied reference scores, as at initial weights: the choice among '
                     'equal scores is arbitrary; check with trained weights)')
    else:
        what = f"max abs diff {report['max_abs_diff']:.3g}"
    line = (f"OpenVINO {'int8' if int8 else 'fp32'} vs {runtime} {reference_kind} on "
            f"{what_input}: {what} (scale {report['scale']:.3g}, relative {rel:.3g}"
            f"{')' if int8 else f', tolerance {tolerance:g})'}")
    if 'argmax_agreement' in report:
        line += f"; same argmax on {100 * report['argmax_agreement']:.4f}% of pixels"
    if int8:  # no bound holds for every model: the fidelity is reported
        return line, True
    ok = rel <= tolerance and report.get('labels_equal', True)
    return f"{line}: {'OK' if ok else 'FAILED'}", ok


def _check_int8(args, report, compare_backends) -> None:
    """Print the int8 model's fidelity on a random input and on calibration images,
    and how many of its convolutions the CPU plugin runs in int8."""
    from mobilenet_tasks.deployment.openvino_export import preprocessed_images
    print(_check_line(compare_backends(args.model, args.out, threads=args.threads),
                      True, args.tolerance, args.model, 'a random input')[0] +
          ' (noise activates the network outside the ranges calibrated on images: '
          'this understates int8 fidelity)')
    paths = report.calibration_paths[:4]
    batches = preprocessed_images(args.model, paths, args.config)
    print(_check_line(compare_backends(args.model, args.out, threads=args.threads,
                                       batches=batches),
                      True, args.tolerance, args.model,
                      f'{len(paths)} of the calibration images')[0] +
          ' (calibrated on, so optimistic; tools/test.py CONFIG MODEL.xml measures '
          'the accuracy)')
    _print_int8_convolutions(args)


def _print_int8_convolutions(args) -> None:
    from mobilenet_tasks.backends import open_backend
    precisions = open_backend(args.out, threads=args.threads).runtime_precisions()
    convs = {p: n for (kind, p), n in precisions.items() if kind == 'Convolution'}
    int8 = sum(n for p, n in convs.items() if p in ('u8', 'i8'))
    print(f'compiled for this CPU: {int8} of {sum(convs.values())} convolutions run '
          'in int8')


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.apis.inputs import InputError
    from mobilenet_tasks.datasets.checks import DatasetNotFoundError
    from mobilenet_tasks.deployment.openvino_export import (compare_backends,
                                                            convert_onnx,
                                                            quantize_openvino)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            warnings.simplefilter('ignore', DeprecationWarning)
            if args.int8:
                report = quantize_openvino(
                    args.model, args.out, config=args.config, images=args.images,
                    split=args.split, num_images=args.num_images or None,
                    preset=args.preset, ignored_types=args.ignored_types)
                print(report)
            else:
                from mobilenet_tasks.backends import read_metadata
                convert_onnx(args.model, args.out)
                qdq = 'quantization' in read_metadata(args.model)  # int8 already
                print(f'converted {args.model} -> {args.out} (OpenVINO IR, '
                      + ('int8 from the ONNX file\'s QDQ nodes' if qdq else
                         'fp32 weights') + ', metadata in rt_info)')
    except (InputError, DatasetNotFoundError, FileNotFoundError, ValueError) as e:
        # ValueError: the library's QuantizationError, OpenVINOExportError and
        # BackendError (RuntimeMissingError: OpenVINO or NNCF not installed)
        print(f'error: {e}', file=sys.stderr)
        return 2
    if not args.check:
        return 0
    if args.int8:
        _check_int8(args, report, compare_backends)
        return 0
    if qdq:  # two runtimes' int8 kernels: a measure, not a pass / fail
        print(_check_line(compare_backends(args.model, args.out, threads=args.threads),
                          True, args.tolerance, args.model, 'a random input',
                          'int8 (the same QDQ file)')[0])
        _print_int8_convolutions(args)
        return 0
    line, ok = _check_line(compare_backends(args.model, args.out, threads=args.threads),
                           False, args.tolerance, args.model, 'a random input')
    print(line)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
