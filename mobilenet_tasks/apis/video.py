"""Videos and webcams through an :class:`~mobilenet_tasks.apis.Inferencer`, as a pipeline.

Three stages overlap: a reader thread decodes frames (``cv2.VideoCapture``) into a
bounded queue, the calling thread runs ``inferencer.predict`` on batches of
``inferencer.batch_size`` frames, and a writer thread draws each result
(``inferencer.draw``), encodes it (``cv2.VideoWriter``: same size, frame rate and frame
count as the input) and writes one JSON line per frame::

    {"frame": 0, "time": 0.0, "boxes": [...], "scores": [...], ...}

OpenCV releases the GIL while it decodes, draws and encodes, so the reader and the writer
run beside the model's forward pass rather than after it. The queues are bounded (a few
batches), so memory does not grow with the video's length. torch's thread count is left
as the caller set it: on 2 cores the demo SSDLite (160x160 input) runs a video about 10%
faster with ``torch.set_num_threads(1)`` (its convolutions gain nothing from a second
thread, which then competes with decoding and encoding), while LR-ASPP at 256x512 runs
about 15% faster with 2 (``tools/analysis_tools/benchmark_inferencer.py --threads``).

Errors: a missing or unreadable video raises :class:`InputError` naming the file; a video
that breaks off (decoding fails before the frame count its header reports) warns, naming
the file and the frame, and what was read is processed and written. An exception in any
stage stops the others and is raised again in the caller; the output video is released
in every case, so the frames written so far stay in a valid file.
"""
import json
import os
import os.path as osp
import queue
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Optional, Union

import cv2
from tqdm import tqdm

from .inputs import InputError, is_video_file

__all__ = ['VideoSummary', 'is_video', 'run_video']

# Codec of the output video, by the output's extension (what opencv-python's FFmpeg
# writes without extra libraries).
FOURCC = {'.mp4': 'mp4v', '.mov': 'mp4v', '.mkv': 'mp4v', '.avi': 'MJPG', '.webm': 'VP80'}
WEBCAM_FPS = 30.0  # written to a webcam's output video when the camera reports none
_QUEUE_BATCHES = 2  # each queue holds this many batches: enough to keep stages busy
_POLL = 0.05  # seconds a blocked thread waits before checking whether to stop
_JOIN_TIMEOUT = 30.0  # seconds to wait for a stage to finish after the pipeline stops
_END = object()  # sentinel: no more items


@dataclass
class VideoSummary:
    """What :func:`run_video` did.

    Attributes:
        source (str): The video file, or ``'webcam:<index>'``.
        frames_read (int): Frames decoded.
        frames_processed (int): Frames predicted and written (drawn and/or as JSON).
        frame_count (int or None): Frames the file reports (None for a webcam).
        fps_in (float): The input's frame rate, which the output video keeps.
        fps_out (float): Frames processed per second of wall time, end to end
            (reading, inference, drawing, writing).
        seconds (float): Wall time of the whole run.
        video_out (str or None): The drawn video written, if any.
        jsonl (str or None): The JSON-lines file written, if any.
        broke_off (bool): Decoding failed before ``frame_count`` frames.
    """
    source: str
    frames_read: int
    frames_processed: int
    frame_count: Optional[int]
    fps_in: float
    fps_out: float
    seconds: float
    video_out: Optional[str] = None
    jsonl: Optional[str] = None
    broke_off: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def is_video(source) -> bool:
    """Whether ``source`` is a webcam index (int) or a path with a video extension."""
    if isinstance(source, int) and not isinstance(source, bool):
        return True
    return (isinstance(source, (str, os.PathLike)) and is_video_file(source)
            and not osp.isdir(source))


class _Pipeline:
    """Shared state of the three stages: the queues, the stop flags and the errors."""

    def __init__(self, batch_size: int):
        self.frames = queue.Queue(maxsize=_QUEUE_BATCHES * batch_size + 1)
        self.results = queue.Queue(maxsize=_QUEUE_BATCHES)
        self.stop_reading = threading.Event()  # the reader ends (no error)
        self.abort = threading.Event()  # a stage failed: every stage ends at once
        self.errors = []  # exceptions of the reader and the writer threads

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.abort.set()

    def put(self, q: queue.Queue, item, stop: Optional[threading.Event] = None) -> bool:
        """Put ``item`` unless the pipeline aborts (or ``stop`` is set) meanwhile."""
        while not (self.abort.is_set() or (stop is not None and stop.is_set())):
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue):
        """The next item, or ``_END`` once the pipeline aborts."""
        while not self.abort.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return _END


def _open(source):
    """Open a video file or webcam; InputError if it cannot be read."""
    if isinstance(source, int):
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise InputError(f'webcam {source}: cannot be opened (is a camera attached '
                             'at that index?)')
        return cap, f'webcam:{source}'
    path = os.fspath(source)
    if not osp.isfile(path):
        raise InputError(f'{path}: no such video file')
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise InputError(f'{path}: cannot be opened as a video (not a video, a codec '
                         'OpenCV cannot decode, or cut off before its index, as an '
                         'unfinished .mp4 is)')
    return cap, path


def _default_outputs(name: str, out_dir: Optional[str], draw: bool,
                     jsonl: Optional[str], video_out: Optional[str]):
    """Output paths: explicit ones win; ``out_dir`` gives ``<stem>.mp4`` and ``<stem>.jsonl``."""
    if out_dir is not None:
        stem = osp.splitext(osp.basename(name))[0].replace(':', '')
        if video_out is None and draw:
            video_out = osp.join(out_dir, f'{stem}.mp4')
        if jsonl is None:
            jsonl = osp.join(out_dir, f'{stem}.jsonl')
    return jsonl, video_out


def _make_writer(path: str, fps: float, size):
    ext = osp.splitext(path)[1].lower()
    if ext not in FOURCC:
        raise InputError(f'{path}: the output video must end in one of '
                         f'{", ".join(FOURCC)}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC[ext]), fps, size)
    if not writer.isOpened():
        writer.release()
        raise InputError(f'{path}: OpenCV cannot write a {FOURCC[ext]} video there')
    return writer


def run_video(inferencer,
              source: Union[str, os.PathLike, int],
              out_dir: Optional[str] = None,
              draw: bool = False,
              progress: bool = True,
              jsonl: Optional[str] = None,
              video_out: Optional[str] = None,
              max_frames: Optional[int] = None) -> VideoSummary:
    """Run an inferencer over a video file or a webcam, frame by frame.

    Args:
        inferencer (Inferencer): Gives ``predict``, ``draw`` and ``batch_size``.
        source (str | PathLike | int): A video file, or a webcam index.
        out_dir (str, optional): Writes ``<stem>.jsonl`` there, and ``<stem>.mp4``
            (the drawn video) if ``draw``. Defaults to None.
        draw (bool): Draw the results into ``out_dir/<stem>.mp4``. Defaults to False.
        progress (bool): Show a tqdm bar (with the total when the file reports it).
        jsonl (str, optional): JSON-lines file (one line a frame); overrides
            ``out_dir``'s.
        video_out (str, optional): Drawn video (``.mp4 .mov .mkv .avi .webm``);
            overrides ``out_dir``'s and draws whatever ``draw`` says.
        max_frames (int, optional): Stop after this many frames. A webcam runs until
            then, or until Ctrl-C.

    Returns:
        VideoSummary: Frames read and processed, frame rates, outputs written.

    Raises:
        InputError: The video is missing or cannot be decoded, or an output cannot be
            written.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f'max_frames must be >= 1 or None, got {max_frames}')
    job = _VideoJob(inferencer, source, max_frames)
    jsonl, video_out = _default_outputs(job.name, out_dir, draw, jsonl, video_out)
    for output in (jsonl, video_out):
        if output is not None and not job.webcam and osp.exists(output) and \
                osp.samefile(output, job.name):
            job.cap.release()
            raise InputError(f'{output}: is the input video; write the outputs '
                             'elsewhere (another out_dir, or video_out=/jsonl=)')
    return job.run(jsonl, video_out, progress)


class _VideoJob:
    """One run: the capture, the three stages and what they counted."""

    def __init__(self, inferencer, source, max_frames: Optional[int]):
        self.inferencer = inferencer
        self.batch_size = max(1, int(getattr(inferencer, 'batch_size', 1) or 1))
        self.max_frames = max_frames
        self.webcam = isinstance(source, int) and not isinstance(source, bool)
        self.start = time.perf_counter()
        self.cap, self.name = _open(source)
        try:
            fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
            if not fps > 0 and not self.webcam:
                raise InputError(f'{self.name}: the video reports no frame rate')
            self.fps = fps if fps > 0 else WEBCAM_FPS
            self.count = None if self.webcam else \
                int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            # The first frame, read here: it proves the file decodes and gives the size.
            ok, self.first = self.cap.read()
            if not ok or self.first is None:
                raise InputError(f'{self.name}: no frame could be decoded (empty or '
                                 'damaged video)')
        except BaseException:
            self.cap.release()
            raise
        self.first_time = self._timestamp(0)
        self.height, self.width = self.first.shape[:2]
        self.pipe = _Pipeline(self.batch_size)
        self.frames_read, self.frames_written = 1, 0
        self.writer = self.jsonl_file = self.bar = None

    def _timestamp(self, index: int) -> float:
        """Seconds of the frame just read: the decoder's timestamp (wall time for a
        webcam)."""
        if self.webcam:
            return time.perf_counter() - self.start
        msec = self.cap.get(cv2.CAP_PROP_POS_MSEC)
        return msec / 1000 if msec >= 0 else index / self.fps

    def run(self, jsonl: Optional[str], video_out: Optional[str],
            progress: bool) -> VideoSummary:
        pipe = self.pipe
        total = [n for n in (self.count, self.max_frames) if n is not None]
        reader = threading.Thread(target=self._read, name='video-reader', daemon=True)
        writer = threading.Thread(target=self._write, name='video-writer', daemon=True)
        try:
            if video_out is not None:
                self.writer = _make_writer(video_out, self.fps, (self.width, self.height))
            if jsonl is not None:
                os.makedirs(osp.dirname(osp.abspath(jsonl)), exist_ok=True)
                self.jsonl_file = open(jsonl, 'w')
            self.bar = tqdm(total=min(total) if total else None, unit='frame',
                            desc=osp.basename(self.name), disable=not progress,
                            dynamic_ncols=True)
            reader.start()
            writer.start()
            try:
                self._infer()
            except KeyboardInterrupt:
                if not self.webcam:
                    raise
                # a webcam runs until Ctrl-C: keep what was done
        finally:
            # Stop reading; the writer finishes what was predicted (unless it failed).
            pipe.stop_reading.set()
            if writer.is_alive():
                pipe.put(pipe.results, _END)
                writer.join(_JOIN_TIMEOUT)
            if writer.is_alive() or reader.is_alive():
                pipe.abort.set()
            for thread in (reader, writer):
                if thread.ident is not None:
                    thread.join(_JOIN_TIMEOUT)
            if not reader.is_alive():
                self.cap.release()
            if self.writer is not None:
                self.writer.release()  # the frames written so far make a valid file
            if self.jsonl_file is not None:
                self.jsonl_file.close()
            if self.bar is not None:
                self.bar.close()
        if pipe.errors:
            raise pipe.errors[0]

        seconds = time.perf_counter() - self.start
        broke_off = (self.count is not None and self.frames_read < self.count
                     and (self.max_frames is None or self.frames_read < self.max_frames))
        if broke_off:
            warnings.warn(f'{self.name}: the video broke off at frame {self.frames_read} '
                          f'of the {self.count} it reports (decoding failed); the '
                          f'{self.frames_read} frames read were processed', stacklevel=3)
        return VideoSummary(
            source=self.name, frames_read=self.frames_read,
            frames_processed=self.frames_written, frame_count=self.count,
            fps_in=self.fps, fps_out=self.frames_written / seconds, seconds=seconds,
            video_out=video_out, jsonl=jsonl, broke_off=broke_off)

    def _read(self) -> None:
        """Reader thread: frames into ``pipe.frames``, then the end marker."""
        pipe = self.pipe
        try:
            index, frame, seconds = 0, self.first, self.first_time
            while pipe.put(pipe.frames, (index, seconds, frame), pipe.stop_reading):
                index += 1
                if self.max_frames is not None and index >= self.max_frames:
                    break
                ok, frame = self.cap.read()
                if not ok or frame is None:
                    break
                seconds = self._timestamp(index)
                self.frames_read = index + 1
            else:
                return  # stopped or aborted: no end marker needed
            pipe.put(pipe.frames, _END, pipe.stop_reading)
        except BaseException as error:  # noqa: B902 (raised again in the caller)
            pipe.fail(error)

    def _infer(self) -> None:
        """Calling thread: batches of frames in, (frame, result) batches out."""
        pipe, done = self.pipe, False
        while not done and not pipe.abort.is_set():
            batch = []
            while len(batch) < self.batch_size:
                item = pipe.get(pipe.frames)
                if item is _END:
                    done = True
                    break
                batch.append(item)
            if not batch:
                break
            results = self.inferencer.predict([frame for _, _, frame in batch])
            if len(results) != len(batch):
                raise RuntimeError(f'inferencer.predict returned {len(results)} '
                                   f'results for {len(batch)} frames')
            pipe.put(pipe.results, [(i, t, frame, result)
                                    for (i, t, frame), result in zip(batch, results)])

    def _write(self) -> None:
        """Writer thread: draw and encode each frame, write its JSON line."""
        pipe = self.pipe
        try:
            while True:
                item = pipe.get(pipe.results)
                if item is _END:
                    return
                for index, seconds, frame, result in item:
                    if self.writer is not None:
                        drawn = self.inferencer.draw(frame, result)
                        if drawn.shape[:2] != (self.height, self.width):
                            raise ValueError(
                                f'inferencer.draw returned a {drawn.shape[1]}x'
                                f'{drawn.shape[0]} image for a {self.width}x'
                                f'{self.height} frame')
                        self.writer.write(drawn)
                    if self.jsonl_file is not None:
                        line = dict(frame=index, time=round(seconds, 6))
                        line.update(result.to_dict())
                        self.jsonl_file.write(json.dumps(line) + '\n')
                    self.frames_written += 1
                    self.bar.update(1)
        except BaseException as error:  # noqa: B902 (raised again in the caller)
            pipe.fail(error)
