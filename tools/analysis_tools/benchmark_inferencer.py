"""End-to-end video throughput: our Inferencer (run_video) against mmdet's / mmseg's.

    python tools/analysis_tools/benchmark_inferencer.py [MODEL] [--weights CKPT]
        [--frames 300] [--size H W] [--threads N] [--batch-size 1] [--repeats 3]
        [--stages] [--quick] [--work-dir work_dirs/benchmark_inferencer]

Both sides do the whole job on the same video, model config, checkpoint and torch
threads: read every frame with ``cv2.VideoCapture``, predict, draw, write the drawn frame
with ``cv2.VideoWriter`` (mp4v). Ours is ``run_video(Inferencer(...), video,
video_out=..., draw=True)``; theirs is what an mmdet (mmseg) user writes today: a cv2
loop calling ``DetInferencer(frame, return_vis=True)`` (``MMSegInferencer``) and writing
its visualisation. Model building is outside the timing; each side warms up once on a
few frames. Runs alternate (ours, theirs, ours, theirs, ...) so drifts in machine load
hit both; the table gives every run, the medians and ours / theirs.

MODEL is a config path or a model-index name (default ``ssdlite_v3_large_demo``;
``lraspp_v3_large_demo`` benchmarks against mmseg's MMSegInferencer). Without
``--weights`` the model's random initialisation is saved once (with the config's class
names, so both sides draw the same labels) and used by both. The video is generated
(demo shapes for detection, demo street scenes for segmentation, moving) and reused.
``--stages`` adds per-stage times (decode, predict, draw, encode), one stage at a time.
Results also go to ``WORK_DIR/<model>_benchmark.json``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time
import warnings
from pathlib import Path

# Only the standard library here: OpenCV, numpy, torch, mmdet, mmseg and the models load
# in the functions that use them, once the arguments are parsed, so --help and an
# argument error answer at once.
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = 'ssdlite_v3_large_demo'
FPS = 25.0  # frame rate of the generated video
SHIFT = 3  # pixels the generated scene moves a frame
SCENE_FRAMES = 40  # frames before the generated video cuts to another scene
WARMUP_FRAMES = 5


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Video frames per second, end to end: our Inferencer vs '
        "mmdet's DetInferencer / mmseg's MMSegInferencer")
    parser.add_argument('model', nargs='?', default=DEFAULT_MODEL,
                        help=f'config path or model-index name (default {DEFAULT_MODEL})')
    parser.add_argument('--weights', help='checkpoint; default: random init, saved once')
    parser.add_argument('--frames', type=int, default=300, help='frames in the video')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='frame size (default 320 320 detection, 256 512 '
                        'segmentation)')
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='torch threads for both sides (default: all cores, '
                        f'{os.cpu_count()})')
    parser.add_argument('--batch-size', type=int, default=1)
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection score threshold for drawing (both sides)')
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed runs of each side, alternating')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--stages', action='store_true',
                        help='also time each stage alone (decode, predict, draw, '
                        'encode) on both sides')
    parser.add_argument('--quick', action='store_true',
                        help='a few small frames, one run each (for tests)')
    parser.add_argument('--work-dir', default=str(ROOT / 'work_dirs/benchmark_inferencer'))
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.repeats = min(args.frames, 12), 1
    if args.frames < 1 or args.repeats < 1 or args.threads < 1 or args.batch_size < 1:
        parser.error('--frames, --repeats, --threads and --batch-size must be >= 1')
    return args


# ---------------------------------------------------------------------------------------
# Inputs: config, weights, video
# ---------------------------------------------------------------------------------------
def config_and_task(model: str):
    """``(config path, loaded config, task)`` of a config path or a model-index name;
    SystemExit with a message for anything else, or a config that is neither a
    detector nor a segmentor."""
    from mobilenet_tasks.utils.config import load_config, resolve_config
    from mobilenet_tasks.utils.task import TaskError, task_of_config
    try:
        config_path = osp.abspath(resolve_config(model))
    except ValueError as e:
        hint = str(e).partition('; ')[2] or str(e)
        raise SystemExit(f'error: {model}: neither a config file nor a model-index '
                         f'name (see model-index.yml); {hint}') from e
    cfg = load_config(config_path)
    try:
        task = task_of_config(cfg, model, 'the benchmark compares detection and '
                              'segmentation inferencers')
    except TaskError as e:
        raise SystemExit(f'error: {e}') from e
    return config_path, cfg, task


def dataset_meta(cfg) -> dict:
    """classes and palette of the config's test set, as the OpenMMLab inferencers read them."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mobilenet_tasks'))
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg['lazy_init'] = True
    meta = DATASETS.build(dataset_cfg).metainfo
    return dict(classes=list(meta['classes']),
                palette=[list(map(int, c)) for c in meta.get('palette', [])] or None)


def random_weights(cfg, config_path: str, work_dir: Path) -> str:
    """Save the model's random initialisation once (seed 0), with its class names."""
    path = work_dir / f'{Path(config_path).stem}_random_init.pth'
    if not path.is_file():
        import torch

        from mobilenet_tasks.utils.config import build_model
        torch.manual_seed(0)
        model = build_model(cfg)
        torch.save(dict(state_dict=model.state_dict(),
                        meta=dict(dataset_meta=dataset_meta(cfg))), path)
    return str(path)


def _scenes(task: str, size, count: int):
    """``count`` BGR scenes of the demo datasets' kind, each ``size`` = (H, W)."""
    import numpy as np
    height, width = size
    scenes = []
    for k in range(count):
        if task == 'detection':
            from mobilenet_tasks.datasets.demo_coco import draw_demo_image, image_rng
            side = max(height, width)
            image = draw_demo_image(image_rng(7, 'val', k), size=side)[0]
        else:
            from mobilenet_tasks.datasets.demo_cityscapes import draw_demo_street
            image = draw_demo_street(np.random.default_rng([7, k]), (height, width))[0]
        scenes.append(np.ascontiguousarray(image[:height, :width, ::-1]))
    return scenes


def make_video(path: Path, task: str, frames: int, size) -> str:
    """Write (once) a video of ``frames`` frames: demo scenes panning, a cut every 40."""
    import cv2
    import numpy as np
    if path.is_file():
        cap = cv2.VideoCapture(str(path))
        complete = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == frames
        cap.release()
        if complete:
            return str(path)
    height, width = size
    scenes = _scenes(task, size, -(-frames // SCENE_FRAMES))
    tmp = path.with_name(path.stem + '.tmp' + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*'mp4v'), FPS,
                             (width, height))
    try:
        for i in range(frames):
            scene = scenes[i // SCENE_FRAMES]
            writer.write(np.roll(scene, SHIFT * (i % SCENE_FRAMES), axis=1))
    finally:
        writer.release()
    os.replace(tmp, path)
    return str(path)


# ---------------------------------------------------------------------------------------
# The two sides
# ---------------------------------------------------------------------------------------
def build_ours(model: str, weights: str, args):
    from mobilenet_tasks.apis import Inferencer
    return Inferencer(model=model, weights=weights, device=args.device,
                      score_thr=args.score_thr, batch_size=args.batch_size)


def build_theirs(config_path: str, weights: str, task: str, args):
    """mmdet's DetInferencer / mmseg's MMSegInferencer on our config (our registry is
    reached through ``type='mobilenet_tasks.X'``: mmengine imports
    ``mobilenet_tasks.registry`` for the scope, nothing to import first)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if task == 'detection':
            from mmdet.apis import DetInferencer
            return DetInferencer(model=config_path, weights=weights, device=args.device,
                                 scope='mmdet', show_progress=False)
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=config_path, weights=weights,
                                     device=args.device, scope='mmseg')
        inferencer.show_progress = False  # mmseg 1.2.2's __init__ does not take it
        return inferencer


def run_ours(inferencer, video: str, out: str, max_frames=None) -> float:
    """Frames per second of ``run_video`` (read, infer, draw, write), wall clock."""
    from mobilenet_tasks.apis.video import run_video
    start = time.perf_counter()
    summary = run_video(inferencer, video, video_out=out, draw=True, progress=False,
                        max_frames=max_frames)
    return summary.frames_processed / (time.perf_counter() - start)


def _their_vis(inferencer, frames, task: str, args):
    if task == 'detection':
        result = inferencer(frames, batch_size=len(frames), return_vis=True,
                            no_save_vis=True, pred_score_thr=args.score_thr)
    else:
        result = inferencer(frames, batch_size=len(frames), return_vis=True)
    vis = result['visualization']
    return vis if isinstance(vis, list) else [vis]  # mmseg unwraps a single image


def run_theirs(inferencer, video: str, out: str, task: str, args,
               max_frames=None) -> float:
    """Frames per second of the cv2 loop an mmdet / mmseg user writes, wall clock."""
    import cv2
    start = time.perf_counter()
    cap = cv2.VideoCapture(video)
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
    done = 0
    try:
        batch = []
        while max_frames is None or done + len(batch) < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            batch.append(frame)
            if len(batch) == args.batch_size:
                for vis in _their_vis(inferencer, batch, task, args):
                    writer.write(vis)
                done, batch = done + len(batch), []
        if batch:
            for vis in _their_vis(inferencer, batch, task, args):
                writer.write(vis)
            done += len(batch)
    finally:
        cap.release()
        writer.release()
    return done / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------
# Stage timings (one stage at a time, no overlap)
# ---------------------------------------------------------------------------------------
def _timed(fn, *a, **k):
    start = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - start


def stage_times(ours, theirs, video: str, task: str, args, frames: int) -> dict:
    """Milliseconds a frame of each stage, each side, run sequentially."""
    import cv2
    cap = cv2.VideoCapture(video)
    images, decode = [], 0.0
    for _ in range(frames):
        (ok, frame), t = _timed(cap.read)
        if not ok:
            break
        images.append(frame)
        decode += t
    size = (images[0].shape[1], images[0].shape[0])
    cap.release()
    n, bs = len(images), args.batch_size
    batches = [images[i:i + bs] for i in range(0, n, bs)]
    writer = cv2.VideoWriter(str(Path(args.work_dir) / 'stages.mp4'),
                             cv2.VideoWriter_fourcc(*'mp4v'), FPS, size)

    # ours
    results, predict = [], 0.0
    for batch in batches:
        res, t = _timed(ours.predict, batch)
        results += res
        predict += t
    drawn, draw = [], 0.0
    for image, result in zip(images, results):
        d, t = _timed(ours.draw, image, result)
        drawn.append(d)
        draw += t
    encode = sum(_timed(writer.write, d)[1] for d in drawn)
    jsonl = sum(_timed(lambda r: json.dumps(r.to_dict()), r)[1] for r in results)
    ours_t = dict(decode=decode, predict=predict, draw=draw, encode=encode,
                  to_json=jsonl)

    # theirs: the phases of BaseInferencer.__call__
    pre = fwd = vis_t = post = 0.0
    vis_all = []
    for batch in batches:
        # DetInferencer.preprocess yields (inputs, data); BaseInferencer's just data
        packed, t1 = _timed(lambda: next(iter(theirs.preprocess(batch, len(batch)))))
        ori, data = packed if task == 'detection' else (batch, packed)
        preds, t2 = _timed(theirs.forward, data)
        if task == 'detection':
            vis, t3 = _timed(theirs.visualize, ori, preds, return_vis=True,
                             pred_score_thr=args.score_thr, no_save_vis=True)
            _, t4 = _timed(theirs.postprocess, preds, vis, no_save_pred=True)
        else:
            vis, t3 = _timed(theirs.visualize, ori, preds, return_vis=True)
            _, t4 = _timed(theirs.postprocess, preds, vis)
        vis_all += vis
        pre, fwd, vis_t, post = pre + t1, fwd + t2, vis_t + t3, post + t4
    encode_t = sum(_timed(writer.write, v)[1] for v in vis_all)
    writer.release()
    theirs_t = dict(decode=decode, preprocess=pre, forward=fwd, draw=vis_t,
                    postprocess=post, encode=encode_t)
    ms = lambda d: {k: round(1000 * v / n, 2) for k, v in d.items()}  # noqa: E731
    return dict(frames=n, ours=ms(ours_t), theirs=ms(theirs_t))


# ---------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path, cfg, task = config_and_task(args.model)
    size = tuple(args.size) if args.size else (
        (320, 320) if task == 'detection' else (256, 512))
    if args.quick and not args.size:
        size = (160, 160) if task == 'detection' else (128, 256)
    weights = args.weights or random_weights(cfg, config_path, work_dir)
    video = make_video(work_dir / f'{task}_{args.frames}f_{size[0]}x{size[1]}.mp4',
                       task, args.frames, size)
    theirs_name = 'mmdet DetInferencer' if task == 'detection' else \
        'mmseg MMSegInferencer'

    ours = build_ours(args.model, weights, args)
    theirs = build_theirs(config_path, weights, task, args)
    out_ours, out_theirs = str(work_dir / 'ours.mp4'), str(work_dir / 'theirs.mp4')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run_ours(ours, video, out_ours, max_frames=WARMUP_FRAMES)
        run_theirs(theirs, video, out_theirs, task, args, max_frames=WARMUP_FRAMES)
        runs = {'ours': [], 'theirs': []}
        for _ in range(args.repeats):
            runs['ours'].append(run_ours(ours, video, out_ours))
            runs['theirs'].append(run_theirs(theirs, video, out_theirs, task, args))
        stages = stage_times(ours, theirs, video, task, args, min(args.frames, 60)) \
            if args.stages else None

    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = med['ours'] / med['theirs']
    report = dict(model=args.model, config=osp.relpath(config_path, ROOT),
                  weights=args.weights or f'random init ({weights})', task=task,
                  video=dict(path=video, frames=args.frames, height=size[0],
                             width=size[1], fps=FPS),
                  threads=args.threads, batch_size=args.batch_size,
                  score_thr=args.score_thr, theirs=theirs_name,
                  fps=runs, median_fps=med, ratio=ratio, stages_ms_per_frame=stages)
    (work_dir / f'{Path(config_path).stem}_benchmark.json').write_text(
        json.dumps(report, indent=2))

    print(f'model:   {args.model} ({report["config"]}), weights: {report["weights"]}')
    print(f'video:   {args.frames} frames {size[1]}x{size[0]} at {FPS:g} fps; read with '
          'cv2, drawn, written with cv2.VideoWriter (mp4v)')
    print(f'torch threads {args.threads}, batch {args.batch_size}, runs alternate, '
          f'{args.repeats} each\n')
    head = ''.join(f'run {i + 1:<5}' for i in range(args.repeats))
    print(f'{"frames per second":<28}{head}median')
    for key, label in (('ours', 'ours (run_video)'), ('theirs', theirs_name)):
        cells = ''.join(f'{v:<9.1f}' for v in runs[key])
        print(f'{label:<28}{cells}{med[key]:.1f}')
    print(f'\nours / theirs: {ratio:.2f}x')
    if stages:
        print(f'\nms a frame, each stage alone ({stages["frames"]} frames):')
        for side in ('ours', 'theirs'):
            print(f'  {side:<7}' + '  '.join(f'{k} {v:.1f}'
                                             for k, v in stages[side].items()))
    return report


if __name__ == '__main__':
    sys.exit(main() and 0)
