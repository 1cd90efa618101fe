"""Export a detection or segmentation config to an ExecuTorch program (``.pte``)
delegated to XNNPACK, float32 or int8, and check it.

    python tools/deployment/export_executorch.py CONFIG CHECKPOINT OUT.pte
        [--shape H W] [--int8 [--images DIR | --split train] [--num-images 32]
        [--keep-float se,head,stem] [--hswish float|int8] [--observer histogram|minmax]]
        [--require-delegation]
        [--tolerance 1e-3]

CHECKPOINT may be ``none`` (random weights: for trying the export only). The program
takes the same normalised float32 NCHW image as the ONNX export, at one size (the
config's test resize, 320x320 for SSDLite, 1024x2048 for the Cityscapes configs);
segmentation gives logits at the input size, detection the head's raw outputs (box
decoding and NMS are mmdet's post-processing, run by ``tools/test.py`` and the
inferencer). int8 is PT2E post-training quantization with XNNPACK's quantizer,
calibrated on dataset images through the config's test preprocessing. See
``mobilenet_tasks.deployment.executorch_export``.

A QAT checkpoint (``tools/train.py CONFIG --qat``) exports to int8 with the ranges
it was trained with, from its own config (the QAT work dir's) or the float one: no
calibration, and no int8 option applies (``--int8`` is implied). Its check compares
the program with the QAT model's fake-quantized graph.

The tool prints what XNNPACK runs and every operator it does not take (these run on
ExecuTorch's slow portable kernels; ``--require-delegation`` makes them an error).
Then PyTorch and the program run on the same random preprocessed input: float32 must
agree within ``--tolerance`` times the output scale (exit status 1 otherwise); for
int8 the difference is printed as a measure only (check its accuracy with
``tools/test.py CONFIG OUT.pte``).

Exit status: 0 done; 1 an export that failed its check or was refused; 2 a bad
argument.
"""
import argparse
import sys
import warnings

# Only argparse and the choices (no torch) before parsing: --help answers at once.
from mobilenet_tasks.deployment.options import (ACTIVATION_OBSERVERS, FLOAT_PARTS,
                                                HSWISH_MODES, SPLITS)


def _parts(text: str):
    parts = tuple(p.strip() for p in text.split(',') if p.strip())
    bad = [p for p in parts if p not in FLOAT_PARTS]
    if bad:
        raise argparse.ArgumentTypeError(
            f'unknown part(s) {", ".join(bad)}; choose among {", ".join(FLOAT_PARTS)} '
            '(comma-separated), or "" for none')
    return parts


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a detection or segmentation model to an ExecuTorch '
        'program delegated to XNNPACK (float32 or int8) and check it')
    parser.add_argument('config', help='detection or segmentation config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random "
                        'weights')
    parser.add_argument('out', help='the .pte file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        default=None, help="input height and width (default: the "
                        "config's test resize)")
    parser.add_argument('--int8', action='store_true',
                        help='PT2E int8 with XNNPACKQuantizer, calibrated on images')
    source = parser.add_mutually_exclusive_group()
    source.add_argument('--images', default=None,
                        help='int8: folder of calibration images (recursive)')
    source.add_argument('--split', choices=SPLITS, default='train',
                        help="int8: split of the config's dataset to calibrate on "
                        '(default: train)')
    parser.add_argument('--num-images', type=int, default=32,
                        help='int8: calibration images (default 32)')
    parser.add_argument('--keep-float', type=_parts, default=None,
                        help='int8: parts left float, comma-separated among '
                        f'{", ".join(FLOAT_PARTS)} (default: the measured recipe)')
    parser.add_argument('--hswish', choices=HSWISH_MODES, default=None,
                        help='int8: h-swish in float between quantize nodes, or on '
                        'quantized adds, clamps and multiplies (default: the measured '
                        'recipe)')
    parser.add_argument('--observer', choices=ACTIVATION_OBSERVERS, default='histogram',
                        help="int8: activation ranges from XNNPACK's histogram observer "
                        '(default) or the observed min/max')
    parser.add_argument('--require-delegation', action='store_true',
                        help='fail if any operator is left outside XNNPACK')
    parser.add_argument('--tolerance', type=float, default=1e-3,
                        help='float32: max abs difference allowed, relative to the '
                        'output scale (default 1e-3)')
    args = parser.parse_args(argv)
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    if args.tolerance <= 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    if args.num_images < 1:
        parser.error(f'--num-images must be at least 1, got {args.num_images}')
    if not args.out.endswith('.pte'):
        parser.error(f'{args.out}: the output is an ExecuTorch program, a .pte file')
    if not args.int8 and (args.keep_float or args.hswish or args.images
                          or args.observer != 'histogram'):
        parser.error('--keep-float, --hswish, --observer and --images are int8 '
                     'options: add --int8')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.backends import BackendError
    from mobilenet_tasks.deployment import compare_with_backend, load_model
    from mobilenet_tasks.deployment.executorch_export import (
        DelegationError, QuantizationError, export_executorch_loaded)
    from mobilenet_tasks.apis.inputs import InputError
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model, cfg, meta = load_model(args.config, checkpoint)
            report = export_executorch_loaded(
                model, cfg, meta, args.config, args.out,
                tuple(args.shape) if args.shape else None, int8=args.int8,
                images=args.images, split=args.split, num_images=args.num_images,
                keep_float=args.keep_float, hswish=args.hswish, observer=args.observer,
                require_delegation=args.require_delegation)
    except (DelegationError, QuantizationError, InputError, BackendError, ValueError,
            FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'exported {args.config} -> {report}')
    if report.not_delegated:
        print('warning: these operators run outside XNNPACK, on ExecuTorch\'s '
              'portable kernels (slow): ' + ', '.join(
                  f'{k} ({v})' for k, v in sorted(report.not_delegated.items())),
              file=sys.stderr)
    result = compare_with_backend(args.config, checkpoint, args.out, model=model)
    line = (f"ExecuTorch vs PyTorch: max abs diff {result['max_abs_diff']:.3g} (scale "
            f"{result['logit_scale']:.3g}, relative {result['rel_diff']:.3g}")
    if 'argmax_agreement' in result:
        line += f"; same argmax on {100 * result['argmax_agreement']:.4f}% of pixels"
    if report.quantization.get('method') == 'qat':
        print(f'{line}; against the QAT model\'s fake-quantized graph, which rounds in '
              'another order (differences of a few quantization steps are expected): '
              f'measure its accuracy with tools/test.py {args.config} {args.out})')
        return 0
    if args.int8:
        print(f'{line}; int8, not checked: measure its accuracy with tools/test.py '
              f'{args.config} {args.out})')
        return 0
    ok = result['rel_diff'] <= args.tolerance
    print(f"{line}, tolerance {args.tolerance:g}): {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
