"""Issue 14 item 4: a normal scene filmed at the trained rate, 2x and 3x it raises no event; a slower one warns once.

The bundle is the toy graph (frame-difference PSNR, tests/fakes) calibrated with `vadedge calibrate`
on 10 fps normal videos of a generated scene. The faster videos are the same scene rendered at
finer time steps (`SceneGenerator.render(rate=k)`: objects move 1/k as far per frame), i.e. what
a 20 or 30 fps camera of it records.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import load_bundle, save_bundle  # noqa: E402
from vadedge.calibration.recalibrate import calibrate_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.synthetic import SceneGenerator, write_video  # noqa: E402

H, W, TRAINED_FPS = 64, 96, 10


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """(bundle calibrated on the scene at 10 fps, {rate factor: normal video at 10·k fps}, 5 fps video)."""
    tmp = tmp_path_factory.mktemp("rate")
    gen = SceneGenerator(H, W, seed=0)
    normal = tmp / "normal"
    normal.mkdir()
    for i in range(12):
        write_video(normal / f"{i:02d}.avi", gen.render(60, 100 + i)[0], TRAINED_FPS)
    toy = make_toy_bundle(tmp / "toy", height=H, width=W, color="bgr", smoothing=0.3, min_event_frames=3)
    b = load_bundle(toy)
    m = b.manifest  # frame-difference PSNR only: the toy memory term is a start-up transient
    save_bundle(
        toy,
        dataclasses.replace(m, score=dataclasses.replace(m.score, weights={"psnr": 1.0, "feature_distance": 0.0})),
        b.state,
    )
    calibrate_bundle(toy, [normal], out=tmp / "fitted")
    videos = {
        k: write_video(tmp / f"normal-{k}x.avi", gen.render(60 * k, 200, rate=k)[0], TRAINED_FPS * k) for k in (1, 2, 3)
    }
    slow = write_video(tmp / "slow.avi", gen.render(120, 201)[0][::2], TRAINED_FPS / 2)
    return tmp / "fitted", videos, slow


@pytest.mark.parametrize("k", [1, 2, 3])
def test_no_event_on_normal_frames_at_the_trained_rate_and_faster(scene, k):
    bundle, videos, _ = scene
    res = CliRunner().invoke(cli, ["run", str(videos[k]), "--model", str(bundle), "-q"])
    assert res.exit_code == 0, res.output
    assert f"processed 60 frames (56 scored) of normal-{k}x.avi" in res.output
    assert "events: 0" in res.output
    if k > 1:
        assert f"sampling: {60 * (k - 1)} frames skipped" in res.output
    assert "slower than" not in res.output


def test_sampling_is_what_keeps_a_faster_camera_on_the_trained_scale(scene):
    """Calibrated scores of normal footage centre on 0 (the robust location). Sampled, the 30 fps video
    does too; unsampled it shows a third of the motion per frame and scores far off the trained scale."""
    from vadedge.runtime import Detector, open_source

    bundle, videos, _ = scene
    det = Detector.load(bundle)

    def median(path, sample):
        h = det.stream(f"{path.name}-{sample}")
        with open_source(path, sample_fps=sample) as src:
            scores = [r.score for f in src if (r := h.process(f.image, f.timestamp)).score is not None]
        return float(np.median(scores))

    assert abs(median(videos[3], det.frame_rate)) < 1.5
    assert median(videos[3], None) < -2.5


def test_a_slower_source_warns_once_and_says_what_it_does(scene):
    bundle, _, slow = scene
    res = CliRunner().invoke(cli, ["run", str(slow), "--model", str(bundle)])
    assert res.exit_code == 0, res.output
    assert res.output.count("slower than the 10 frames/s the model was trained at") == 1
    assert "every frame is scored" in res.output and "processed 60 frames" in res.output


def test_sample_fps_and_all_frames_override_the_bundle(scene):
    bundle, videos, _ = scene
    res = CliRunner().invoke(cli, ["run", str(videos[3]), "--model", str(bundle), "-q", "--all-frames"])
    assert res.exit_code == 0 and "processed 180 frames" in res.output, res.output
    res = CliRunner().invoke(cli, ["run", str(videos[3]), "--model", str(bundle), "-q", "--sample-fps", "15"])
    assert res.exit_code == 0 and "processed 90 frames" in res.output, res.output
    res = CliRunner().invoke(cli, ["run", str(videos[3]), "--model", str(bundle), "--sample-fps", "15", "--all-frames"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_train_fps_travels_to_the_bundle(tiny_root, tmp_path):
    """`vadedge train --fps` records the footage's rate; `vadedge export` writes it as the bundle's input.fps."""
    import json

    pytest.importorskip("torch")
    ckpt = tmp_path / "ckpt"
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mnad-pred",
            "--preset",
            "edge-xs",
            "--data",
            str(tiny_root),
            "--out",
            str(ckpt),
            "--epochs",
            "1",
            "--input-size",
            "32x32",
            "--fps",
            "25",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((ckpt / "config.json").read_text())["data"]["fps"] == 25
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--out", str(tmp_path / "b"), "--no-score-calibration", "-q"])
    assert res.exit_code == 0, res.output
    assert load_bundle(tmp_path / "b").manifest.input.fps == 25
