"""tools/infer.py on an image, a folder, a video and bad inputs.

Most cases call the tool's ``main`` in this process (the model is built in seconds); two
run it as a user does, in a subprocess, for the exit code and the one-line error."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mobilenet_tasks.datasets.demo_coco import draw_demo_image, image_rng
from mobilenet_tasks.testing import load_tool

ROOT = Path(__file__).resolve().parents[2]
DET = str(ROOT / 'configs/ssdlite_v3_large_demo.py')
FRAMES, FPS, HEIGHT, WIDTH = 8, 7.0, 96, 128


def _load_tool():
    return load_tool('tools/infer.py')


infer_tool = _load_tool()


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp('inputs')
    folder = root / 'images'
    folder.mkdir()
    for k in range(2):
        image = draw_demo_image(image_rng(1, 'val', k), size=96)[0]
        cv2.imwrite(str(folder / f'img{k}.jpg'), image[:, :, ::-1])
    (folder / 'notes.txt').write_text('not an image')
    video = root / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), FPS,
                             (WIDTH, HEIGHT))
    for i in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
        cv2.circle(frame, (15 + 10 * i, 48), 18, (0, 200, 250), -1)
        writer.write(frame)
    writer.release()
    empty = root / 'empty'
    empty.mkdir()
    bad_ckpt = root / 'bad.pth'
    bad_ckpt.write_bytes(b'this is no checkpoint')
    return dict(image=folder / 'img0.jpg', folder=folder, video=video, empty=empty,
                bad_ckpt=bad_ckpt)


def run_main(capsys, *argv):
    code = infer_tool.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_image(inputs, tmp_path, capsys):
    code, out, err = run_main(capsys, inputs['image'], DET, '--out-dir', tmp_path)
    assert code == 0, err
    assert str(tmp_path) in out and 'detection' in out
    assert any(tmp_path.rglob('*.jpg')) or any(tmp_path.rglob('*.png'))  # drawn


def test_folder_no_draw(inputs, tmp_path, capsys):
    code, out, err = run_main(capsys, inputs['folder'], DET, '--out-dir', tmp_path,
                              '--no-draw', '--batch-size', '2')
    assert code == 0, err
    assert '2 images' in out
    assert not any(tmp_path.rglob('*.jpg'))  # nothing drawn
    records = [json.loads(x) for x in (tmp_path / 'results.jsonl').read_text().splitlines()]
    assert [Path(r['source']).name for r in records] == ['img0.jpg', 'img1.jpg']
    assert {'boxes', 'scores', 'labels', 'names'} <= set(records[0])


def test_video(inputs, tmp_path, capsys):
    out_video, lines = tmp_path / 'drawn.avi', tmp_path / 'clip.jsonl'
    code, out, err = run_main(capsys, inputs['video'], DET, '--video-out', out_video,
                              '--jsonl', lines, '--max-frames', 5, '--score-thr', 0.1)
    assert code == 0, err
    assert 'fps end to end' in out and str(out_video) in out and str(lines) in out
    cap = cv2.VideoCapture(str(out_video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    cap.release()
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    assert [r['frame'] for r in records] == list(range(5))


@pytest.mark.parametrize('case, expected', [
    ('missing.jpg', 'missing.jpg'),
    ('missing.mp4', 'missing.mp4: no such video file'),
    ('empty', 'no images in the folder'),
])
def test_bad_inputs(inputs, tmp_path, capsys, case, expected):
    path = inputs.get(case, tmp_path / case)
    code, out, err = run_main(capsys, path, DET, '--out-dir', tmp_path)
    assert code == 1
    assert err.startswith('error: ') and expected in err
    assert len(err.strip().splitlines()) == 1


def test_bad_checkpoint_and_model(inputs, tmp_path, capsys):
    code, _, err = run_main(capsys, inputs['image'], DET, '--weights',
                            inputs['bad_ckpt'], '--out-dir', tmp_path)
    assert code == 1 and err.startswith('error: ') and 'bad.pth' in err
    code, _, err = run_main(capsys, inputs['image'], 'no_such_model', '--out-dir',
                            tmp_path)
    assert code == 1 and err.startswith('error: ') and 'no_such_model' in err


def test_video_options_need_a_video(inputs, tmp_path, capsys):
    code, _, err = run_main(capsys, inputs['image'], DET, '--video-out',
                            tmp_path / 'x.mp4', '--max-frames', 3)
    assert code == 2 and '--video-out and --max-frames apply to videos' in err


def _subprocess(*argv):
    proc = subprocess.run([sys.executable, str(ROOT / 'tools/infer.py'),
                           *map(str, argv)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr


def test_as_a_user_runs_it(inputs, tmp_path):
    code, out, err = _subprocess(inputs['video'], 'ssdlite_v3_large_demo', '--out-dir',
                                 tmp_path)
    assert code == 0, err
    assert (tmp_path / 'clip.mp4').is_file() and (tmp_path / 'clip.jsonl').is_file()
    assert f'{FRAMES} frames' in out
    code, out, err = _subprocess(tmp_path / 'nothing.avi', 'ssdlite_v3_large_demo')
    assert code == 1
    assert 'Traceback' not in err
    assert 'error: ' in err and 'nothing.avi: no such video file' in err
