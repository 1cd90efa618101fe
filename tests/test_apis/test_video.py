"""run_video: the read -> predict -> draw/write pipeline on short generated videos.

Detection and segmentation run the demo configs (random init); the pipeline's failure
paths use a stand-in inferencer (predict, draw, batch_size) so they are fast and can fail
at a chosen frame.
"""
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilenet_tasks.apis import InputError, Inferencer
from mobilenet_tasks.apis.video import VideoSummary, run_video

pytestmark = pytest.mark.filterwarnings('ignore:.*no weights given:UserWarning')
ROOT = Path(__file__).resolve().parents[2]
FRAMES, FPS, HEIGHT, WIDTH = 12, 7.0, 96, 128
TIMEOUT = 30  # seconds: a pipeline that does not stop by then hangs


def write_video(path, frames=FRAMES, fps=FPS, size=(HEIGHT, WIDTH), fourcc='mp4v'):
    """A moving disc on noise; returns the path."""
    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps,
                             (width, height))
    rng = np.random.default_rng(0)
    for i in range(frames):
        frame = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
        cv2.circle(frame, (12 + 8 * i, height // 2), height // 5, (40, 200, 250), -1)
        writer.write(frame)
    writer.release()
    return path


def read_back(path):
    """(frames decoded, fps, (H, W)) of a video file."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f'{path} is not a readable video'
    fps = cap.get(cv2.CAP_PROP_FPS)
    count, shape = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape[:2]
    cap.release()
    return count, fps, shape


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def no_pipeline_threads():
    return not [t for t in threading.enumerate()
                if t.name in ('video-reader', 'video-writer') and t.is_alive()]


def run_in_thread(fn, *args, **kwargs):
    """Run ``fn`` with a deadline; returns (result, exception). Fails if it hangs."""
    out = {}

    def target():
        try:
            out['result'] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: B902
            out['error'] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), f'run_video did not return within {TIMEOUT} s'
    return out.get('result'), out.get('error')


class _Result:
    def __init__(self, value):
        self.value = value

    def to_dict(self):
        return {'mean': self.value}


class StandIn:
    """predict / draw / batch_size, failing on purpose where asked."""

    def __init__(self, batch_size=1, fail_predict_at=None, fail_draw_at=None):
        self.batch_size = batch_size
        self.fail_predict_at = fail_predict_at  # frame index whose batch fails
        self.fail_draw_at = fail_draw_at
        self.seen = 0
        self.drawn = 0

    def predict(self, frames):
        first, self.seen = self.seen, self.seen + len(frames)
        if self.fail_predict_at is not None and \
                first <= self.fail_predict_at < self.seen:
            raise RuntimeError('predict failed on purpose')
        return [_Result(float(frame.mean())) for frame in frames]

    def draw(self, image, result):
        if self.fail_draw_at is not None and self.drawn == self.fail_draw_at:
            raise RuntimeError('draw failed on purpose')
        self.drawn += 1
        out = image.copy()
        cv2.rectangle(out, (2, 2), (30, 20), (0, 0, 255), 2)
        return out


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp('video') / 'clip.mp4')


@pytest.fixture(scope='module')
def detector():
    # a low threshold: the random-init detector's boxes are drawn and listed
    return Inferencer(model=str(ROOT / 'configs/ssdlite_v3_large_demo.py'), weights=None,
                      device='cpu', score_thr=0.05, batch_size=5)


def test_detection_video(detector, video, tmp_path):
    out, lines = tmp_path / 'drawn.mp4', tmp_path / 'frames.jsonl'
    summary = run_video(detector, video, video_out=str(out), jsonl=str(lines),
                        progress=False)
    assert isinstance(summary, VideoSummary)
    assert (summary.frames_read, summary.frames_processed, summary.frame_count) == \
        (FRAMES, FRAMES, FRAMES)
    assert summary.fps_in == pytest.approx(FPS) and summary.fps_out > 0
    assert not summary.broke_off
    assert (summary.video_out, summary.jsonl) == (str(out), str(lines))
    # same frame count, frame rate and size as the input (batches 5, 5, 2)
    assert read_back(out) == (FRAMES, pytest.approx(FPS), (HEIGHT, WIDTH))
    records = read_jsonl(lines)
    assert [r['frame'] for r in records] == list(range(FRAMES))
    assert [r['time'] for r in records] == pytest.approx(
        [i / FPS for i in range(FRAMES)], abs=1e-3)
    assert {'boxes', 'scores', 'labels', 'names'} <= set(records[0])
    assert any(r['boxes'] for r in records)  # something was drawn


def test_detection_video_through_the_inferencer(detector, video, tmp_path):
    summary = detector(str(video), out_dir=str(tmp_path), draw=True, progress=False)
    assert isinstance(summary, VideoSummary)
    assert summary.video_out == str(tmp_path / 'clip.mp4')
    assert summary.jsonl == str(tmp_path / 'clip.jsonl')
    assert read_back(summary.video_out)[0] == FRAMES
    assert len(read_jsonl(summary.jsonl)) == FRAMES


def test_segmentation_video(video, tmp_path):
    segmenter = Inferencer(model=str(ROOT / 'configs/lraspp_v3_large_demo.py'),
                           weights=None, device='cpu', batch_size=2)
    out, lines = tmp_path / 'seg.avi', tmp_path / 'seg.jsonl'
    summary = run_video(segmenter, video, video_out=str(out), jsonl=str(lines),
                        max_frames=5, progress=False)
    assert (summary.frames_read, summary.frames_processed) == (5, 5)
    assert not summary.broke_off  # stopped by max_frames, not by the file
    assert read_back(out) == (5, pytest.approx(FPS), (HEIGHT, WIDTH))
    records = read_jsonl(lines)
    assert [r['frame'] for r in records] == list(range(5))
    assert all((r['height'], r['width']) == (HEIGHT, WIDTH) for r in records)
    assert all(sum(r['areas'].values()) == HEIGHT * WIDTH for r in records)


def test_jsonl_only_without_drawing(video, tmp_path):
    summary = run_video(StandIn(batch_size=4), video, out_dir=str(tmp_path),
                        draw=False, progress=False)
    assert summary.video_out is None and summary.jsonl == str(tmp_path / 'clip.jsonl')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['clip.jsonl']
    assert len(read_jsonl(summary.jsonl)) == FRAMES


def test_truncated_video_warns_and_keeps_what_was_read(tmp_path):
    # AVI keeps its frame count in the header, so a cut-off file still opens
    whole = write_video(tmp_path / 'whole.avi', fourcc='MJPG')
    data = whole.read_bytes()
    cut = tmp_path / 'cut.avi'
    cut.write_bytes(data[:len(data) * 6 // 10])
    out = tmp_path / 'out.mp4'
    with pytest.warns(UserWarning, match=r'cut\.avi: the video broke off at frame') as rec:
        summary = run_video(StandIn(batch_size=2), cut, video_out=str(out),
                            jsonl=str(tmp_path / 'cut.jsonl'), progress=False)
    assert summary.broke_off and 0 < summary.frames_read < FRAMES
    assert f'frame {summary.frames_read} of the {FRAMES}' in str(rec[0].message)
    assert summary.frames_processed == summary.frames_read
    assert read_back(out) == (summary.frames_read, pytest.approx(FPS), (HEIGHT, WIDTH))
    assert len(read_jsonl(tmp_path / 'cut.jsonl')) == summary.frames_read


def test_unreadable_videos_raise_input_error(tmp_path):
    with pytest.raises(InputError, match='missing.mp4: no such video file'):
        run_video(StandIn(), tmp_path / 'missing.mp4', progress=False)
    text = tmp_path / 'notes.mp4'
    text.write_text('not a video')
    with pytest.raises(InputError, match='notes.mp4: cannot be opened as a video'):
        run_video(StandIn(), text, progress=False)
    # an .mp4 cut off loses its index (written last): nothing can be read
    whole = write_video(tmp_path / 'whole.mp4')
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(whole.read_bytes()[:-2000])
    with pytest.raises(InputError, match='cut.mp4: cannot be opened as a video'):
        run_video(StandIn(), cut, progress=False)
    with pytest.raises(InputError, match=r'out\.gif: the output video must end in'):
        run_video(StandIn(), whole, video_out=str(tmp_path / 'out.gif'), progress=False)


def test_predict_error_stops_the_pipeline_and_keeps_the_output(video, tmp_path):
    out = tmp_path / 'out.mp4'
    # batches of 2: frames 0-3 are predicted, the batch holding frame 5 fails
    summary, error = run_in_thread(
        run_video, StandIn(batch_size=2, fail_predict_at=5), video,
        video_out=str(out), jsonl=str(tmp_path / 'out.jsonl'), progress=False)
    assert summary is None
    assert isinstance(error, RuntimeError) and 'predict failed' in str(error)
    assert no_pipeline_threads()
    assert read_back(out) == (4, pytest.approx(FPS), (HEIGHT, WIDTH))  # a valid file
    assert [r['frame'] for r in read_jsonl(tmp_path / 'out.jsonl')] == [0, 1, 2, 3]


def test_draw_error_in_the_writer_thread_is_raised(video, tmp_path):
    out = tmp_path / 'out.mp4'
    _, error = run_in_thread(run_video, StandIn(fail_draw_at=3), video,
                             video_out=str(out), progress=False)
    assert isinstance(error, RuntimeError) and 'draw failed' in str(error)
    assert no_pipeline_threads()
    assert read_back(out)[0] == 3  # the frames drawn before the failure


def test_refuses_to_overwrite_the_input(tmp_path):
    video = write_video(tmp_path / 'clip.mp4')
    size = video.stat().st_size
    with pytest.raises(InputError, match='clip.mp4: is the input video'):
        run_video(StandIn(), video, out_dir=str(tmp_path), draw=True, progress=False)
    assert video.stat().st_size == size


def test_bad_max_frames(video):
    with pytest.raises(ValueError, match='max_frames must be >= 1'):
        run_video(StandIn(), video, max_frames=0, progress=False)
