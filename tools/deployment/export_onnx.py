"""Export a detection or segmentation config to ONNX (standard operators only) and
check it.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H W]
        [--opset 17] [--dynamic] [--no-nms] [--tolerance 1e-3]

CHECKPOINT may be ``none`` (random weights: for trying the export only). The graph
takes a normalised float32 NCHW image (BGR->RGB, ``(x - mean) / std`` done outside, as
the data preprocessor does; mean, std and the swap are in the ONNX metadata).
Segmentation graphs give logits at the input size. Detection graphs (batch 1, the size
of the config's test resize, 320x320 for SSDLite) give ``boxes``, ``scores`` and
``labels`` after decoding and NMS in the graph, or with ``--no-nms`` the head's raw
outputs (``tools/test.py`` and the inferencer then run mmdet's post-processing on
them). See ``mobilenet_tasks.deployment.onnx_export``.

After exporting, PyTorch and onnxruntime (CPUExecutionProvider) run on the same random
preprocessed input; the max abs difference is printed, and the tool exits with status
1 if it is above ``--tolerance`` times the output scale (the largest abs PyTorch value,
floored at 1), or if the detections differ in number or labels.

A QAT checkpoint (``tools/train.py CONFIG --qat``; its config or the float one) exports
its int8 graph as QDQ (``mobilenet_tasks.deployment.qat_onnx``; detection needs
``--no-nms``); the comparison is then with its fake-quantized PyTorch graph, printed
as a measure (check the file's accuracy with ``tools/test.py CONFIG OUT.onnx``).
"""
import argparse
import sys
import warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a detection or segmentation model to ONNX and check it '
        'with onnxruntime')
    parser.add_argument('config', help='detection or segmentation config file')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random "
                        'weights')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        default=None, help="input height and width (default: the "
                        "config's test resize for detection; its crop size, "
                        'data_preprocessor.size, else 512 1024 for segmentation)')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset (default 17)')
    parser.add_argument('--dynamic', action='store_true',
                        help='segmentation: dynamic batch, height and width')
    parser.add_argument('--no-nms', action='store_true',
                        help="detection: export the head's raw outputs, without box "
                        'decoding and NMS')
    parser.add_argument('--tolerance', type=float, default=1e-3,
                        help='max abs difference allowed, relative to the output '
                        'scale (default 1e-3)')
    args = parser.parse_args(argv)
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {args.shape}')
    if args.tolerance <= 0:
        parser.error(f'--tolerance must be positive, got {args.tolerance}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.deployment import (NonStandardOpError,
                                            compare_with_onnxruntime,
                                            default_input_shape, export_loaded,
                                            load_model)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            model, cfg, meta = load_model(args.config, checkpoint)
            shape = tuple(args.shape) if args.shape else default_input_shape(cfg)
            path = export_loaded(model, cfg, meta, args.config, args.out, shape,
                                 opset=args.opset, dynamic=args.dynamic,
                                 nms=not args.no_nms)
    except (NonStandardOpError, ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    from mobilenet_tasks.utils.task import task_of_model
    detection = task_of_model(model) == 'detection'
    qat = hasattr(model, 'converted_graph')
    if qat:
        from mobilenet_tasks.deployment.qat_onnx import QAT_OPSET
    print(f'exported {args.config} -> {path} (input 1x3x{shape[0]}x{shape[1]}, '
          f'opset {QAT_OPSET if qat else args.opset}'
          f'{", dynamic" if args.dynamic else ""}'
          f'{", raw head outputs" if detection and args.no_nms else ""}'
          f'{", int8 QDQ of the QAT graph" if qat else ""})')
    report = compare_with_onnxruntime(args.config, checkpoint, path, shape, model=model)
    if qat:
        print(f"onnxruntime vs the QAT model's fake-quantized graph: max abs diff "
              f"{report['max_abs_diff']:.3g} (scale {report['logit_scale']:.3g}, "
              f"relative {report['rel_diff']:.3g}"
              + (f"; same argmax on {100 * report['argmax_agreement']:.4f}% of pixels"
                 if 'argmax_agreement' in report else '')
              + '; int8 kernels round in another order, so a few quantization steps '
              f'apart): measure its accuracy with tools/test.py {args.config} {path}')
        return 0
    ok = report['rel_diff'] <= args.tolerance
    if detection and not args.no_nms:
        what = (f"{report['num_detections'][1]} detections vs PyTorch's "
                f"{report['num_detections'][0]}, labels "
                f"{'equal' if report['labels_equal'] else 'DIFFERENT'}; max abs diff "
                f"of boxes and scores {report['max_abs_diff']:.3g}")
        if report['tied_scores'] and not report['labels_equal']:
            what += (' (PyTorch\'s scores are tied, as at initial weights, so the '
                     'choice among equal scores is arbitrary: only the sorted scores '
                     'were compared; check with trained weights)')
    else:
        what = (f"max abs diff of {'head outputs' if detection else 'logits'} "
                f"{report['max_abs_diff']:.3g}")
    line = (f"onnxruntime vs PyTorch: {what} (scale {report['logit_scale']:.3g}, "
            f"relative {report['rel_diff']:.3g}, tolerance {args.tolerance:g})")
    if 'argmax_agreement' in report:
        line += f"; same argmax on {100 * report['argmax_agreement']:.4f}% of pixels"
    print(f"{line}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
