"""Export a segmentation config to ONNX (standard operators only) and check it.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H W]
        [--opset 17] [--dynamic] [--tolerance 1e-3]

CHECKPOINT may be ``none`` (random weights: for trying the export only). After
exporting, PyTorch and onnxruntime (CPUExecutionProvider) run on the same random
preprocessed input; the max abs difference of the logits is printed, and the tool exits
with status 1 if it is above ``--tolerance`` times the logit scale (the largest abs
PyTorch logit, floored at 1). The graph takes a normalised float32 NCHW image (BGR->RGB,
``(x - mean) / std`` done outside, as the data preprocessor does; mean, std and the
swap are in the ONNX metadata) and gives logits at the input size; see
``mobilenet_tasks.deployment.onnx_export``.

Detection configs are not supported yet (exit status 2 with a message).
"""
import argparse
import sys
import warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a segmentation model to ONNX and check it with onnxruntime')
    parser.add_argument('config', help='segmentation config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random "
                        'weights')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        default=None, help='input height and width (default: the '
                        "config's crop size, data_preprocessor.size, else 512 1024)")
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--tolerance', type=float, default=1e-3,
                        help='max abs logit difference allowed, relative to the logit '
                        'scale (default 1e-3)')
    args = parser.parse_args(argv)
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    if args.tolerance <= 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    return args


def _default_shape(config):
    from mobilenet_tasks.utils.config import load_config
    cfg = load_config(config)
    size = (cfg.model.get('data_preprocessor') or {}).get('size')
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return int(size[0]), int(size[1])
    return 512, 1024


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.deployment import (NonStandardOpError,
                                            compare_with_onnxruntime)
    from mobilenet_tasks.deployment.onnx_export import export_loaded, load_segmentor
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    shape = tuple(args.shape) if args.shape else _default_shape(args.config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            model, cfg, meta = load_segmentor(args.config, checkpoint)
            path = export_loaded(model, cfg, meta, args.config, args.out, shape,
                                 opset=args.opset, dynamic=args.dynamic)
    except NotImplementedError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except (NonStandardOpError, ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'exported {args.config} -> {path} (input 1x3x{shape[0]}x{shape[1]}, '
          f'opset {args.opset}{", dynamic" if args.dynamic else ""})')
    report = compare_with_onnxruntime(args.config, checkpoint, path, shape, model=model)
    ok = report['rel_diff'] <= args.tolerance
    print(f"onnxruntime vs PyTorch: max abs diff of logits {report['max_abs_diff']:.3g} "
          f"(logit scale {report['logit_scale']:.3g}, relative {report['rel_diff']:.3g}, "
          f"tolerance {args.tolerance:g}); same argmax on "
          f"{100 * report['argmax_agreement']:.4f}% of pixels: "
          f"{'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
