"""Predict on images, a folder, a video or a webcam, and draw the results.

    python tools/infer.py INPUT MODEL [--weights CKPT] [--device cpu] [--out-dir DIR]
        [--score-thr 0.3] [--batch-size 1] [--no-draw] [--jsonl FILE]
        [--video-out FILE] [--max-frames N]

mmdet's ``demo/image_demo.py`` and ``demo/video_demo.py`` in one, for detection and
segmentation configs alike:

- INPUT: an image, a folder of images, a video (``.mp4 .avi .mov .mkv .webm``) or a
  webcam index (``0``).
- MODEL: a config path or a model-index name (``ssdlite_v3_large_demo``).
- ``--weights``: a checkpoint, or an ``.onnx`` file exported from MODEL
  (``tools/deployment/export_onnx.py``, float or int8), run by onnxruntime.

Images: the drawn images go to ``--out-dir`` (default ``outputs``), one JSON line an
image to ``--jsonl`` (default ``OUT_DIR/results.jsonl``). Videos: the drawn video (same size, frame rate and frame count) to ``--video-out`` (default
``OUT_DIR/<name>.mp4``) and one JSON line a frame to ``--jsonl`` (default
``OUT_DIR/<name>.jsonl``); the frames per second, end to end, are printed. Bad inputs
and checkpoints stop with one line saying what was wrong.
"""
import argparse
import json
import os
import os.path as osp
import sys
import warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Detect or segment images, folders, videos or a webcam')
    parser.add_argument('input', help='image, folder, video file or webcam index')
    parser.add_argument('model', help='config file or model-index name')
    parser.add_argument('--weights', help='checkpoint file, or an .onnx file exported '
                        'from the config (run by onnxruntime); default: random init')
    parser.add_argument('--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--out-dir', default='outputs',
                        help='where results and drawings go (default: outputs)')
    parser.add_argument('--score-thr', '--pred-score-thr', dest='score_thr', type=float,
                        default=0.3, help='detections below this score are dropped')
    parser.add_argument('--batch-size', type=int, default=1, help='images a forward pass')
    parser.add_argument('--threads', type=int, default=None,
                        help='CPU threads (default: OMP_NUM_THREADS if set, else the '
                        'cores this process may use)')
    parser.add_argument('--no-draw', action='store_true',
                        help='write results only, no drawn images or video')
    parser.add_argument('--jsonl', help='results as JSON lines, one an image or frame '
                        '(default OUT_DIR/results.jsonl for images, OUT_DIR/<name>.jsonl '
                        'for a video)')
    video = parser.add_argument_group('videos and webcams')
    video.add_argument('--video-out', help='drawn video (default OUT_DIR/<name>.mp4)')
    video.add_argument('--max-frames', type=int,
                       help='stop after N frames (a webcam otherwise runs until Ctrl-C)')
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f'--max-frames must be >= 1, got {args.max_frames}')
    if args.threads is not None and args.threads < 1:
        parser.error(f'--threads must be >= 1, got {args.threads}')
    return args


def _source(text: str):
    """A webcam index for a bare integer that is not a path, else the text."""
    if not osp.exists(text) and text.isdigit():
        return int(text)
    return text


def _one_line_warnings(message, category, filename, lineno, line=None):
    return f'warning: {message}\n'


def main(argv=None) -> int:
    args = parse_args(argv)
    from mobilenet_tasks.utils.threads import busy_warning, choose_threads, set_threads
    try:
        threads = choose_threads(args.threads)
    except ValueError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    set_threads(threads)
    busy = busy_warning(threads)
    if busy:
        print(f'warning: {busy}', file=sys.stderr)
    from mobilenet_tasks.apis import Inferencer, InputError
    from mobilenet_tasks.apis.video import is_video

    source = _source(args.input)
    video = is_video(source)
    if not video:
        given = [f'--{k.replace("_", "-")}' for k in ('video_out', 'max_frames')
                 if getattr(args, k) is not None]
        if given:
            print(f'error: {" and ".join(given)} apply to videos and webcams; '
                  f'{args.input} is not one', file=sys.stderr)
            return 2
    try:
        inferencer = Inferencer(model=args.model, weights=args.weights,
                                device=args.device, score_thr=args.score_thr,
                                batch_size=args.batch_size, threads=threads)
        if video:
            summary = inferencer(source, out_dir=args.out_dir, draw=not args.no_draw,
                                 progress=True, jsonl=args.jsonl,
                                 video_out=args.video_out, max_frames=args.max_frames)
            _print_video(summary)
        else:
            results = inferencer(source, out_dir=args.out_dir, draw=not args.no_draw,
                                 progress=True)
            _save_images(inferencer, results, args)
    except (InputError, ValueError, FileNotFoundError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a video file: what was done is written and valid
        print('interrupted', file=sys.stderr)
        return 130
    return 0


def _save_images(inferencer, results, args) -> None:
    """One JSON line an image (``{"source": path, **result}``), one a file of the folder
    that could not be read (``{"source": path, "skipped": reason}``), and say where all
    went."""
    jsonl = args.jsonl or osp.join(args.out_dir, 'results.jsonl')
    os.makedirs(osp.dirname(osp.abspath(jsonl)), exist_ok=True)
    with open(jsonl, 'w') as f:
        for result in results:
            f.write(json.dumps(dict(source=result.source, **result.to_dict())) + '\n')
        for path, reason in inferencer.skipped:
            f.write(json.dumps(dict(source=path, skipped=reason)) + '\n')
    count = f'{len(results)} image{"s" * (len(results) != 1)}'
    if inferencer.skipped:
        count += f' ({len(inferencer.skipped)} skipped: listed there with the reason)'
    print(f'{inferencer.task}: {count}; results in {jsonl}')
    if not args.no_draw:
        print(f'drawn images in {args.out_dir}')


def _print_video(summary) -> None:
    read = f'{summary.frames_processed} frames'
    if summary.frame_count and summary.frame_count != summary.frames_processed:
        read += f' of {summary.frame_count}'
    print(f'{summary.source}: {read} in {summary.seconds:.1f} s, {summary.fps_out:.1f} '
          f'fps end to end (input {summary.fps_in:g} fps)')
    if summary.video_out:
        print(f'drawn video: {summary.video_out}')
    if summary.jsonl:
        print(f'json lines:  {summary.jsonl}')


if __name__ == '__main__':
    warnings.formatwarning = _one_line_warnings
    sys.exit(main())
