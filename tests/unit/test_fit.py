"""`vadedge fit`: normal footage of a generated scene → a bundle that loads, stays quiet on normal
frames and raises the event on the anomaly; bad footage and impossible options exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("onnx")

from vadedge.cli import cli  # noqa: E402
from vadedge.datasets import open_split  # noqa: E402
from vadedge.synthetic import generate_dataset  # noqa: E402

TINY = {"height": 32, "width": 48}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    # 6 normal videos of 12 s: 4 to train, 2 held out (25 % of the frames)
    return generate_dataset(
        tmp_path_factory.mktemp("scene") / "scene",
        train_videos=6,
        test_videos=1,
        frames_per_video=120,
        height=48,
        width=64,
        seed=1,
    )


@pytest.fixture(scope="module")
def fitted(scene, tmp_path_factory):
    from vadedge.train.fit import fit

    out = tmp_path_factory.mktemp("fit") / "bundle"
    return fit([scene], out, fps=10, budget_min=5, max_epochs=6, model_overrides=TINY, progress=False, threads=1)


def test_fit_bundle_loads_quiet_on_normal_event_on_anomaly(fitted, scene):
    from vadedge import Detector, load_bundle

    b = load_bundle(fitted.bundle)
    assert b.manifest.input.fps == 10.0
    assert set(b.manifest.score.local) == {"local8", "local16", "local32"}
    assert fitted.videos_heldout == ["scene_05", "scene_06"] and len(fitted.videos_train) == 4
    assert fitted.frames_train == 480 and fitted.frames_heldout == 240
    assert fitted.steps > 0 and np.isfinite(fitted.val_loss) and not fitted.interrupted
    assert "false alarms per hour" in fitted.format()
    labels = json.loads((scene / "labels.json").read_text())["anomalous_intervals"]
    ((first, last),) = labels["01"]  # 1-based, inclusive
    det = Detector.load(fitted.bundle, heatmap=False)
    video = open_split(scene, "testing").videos[0]
    starts, flags = [], []
    h = det.stream("test")
    for i, frame in enumerate(video.iter_frames()):
        r = h.process(frame, timestamp=i / 10)
        flags.append(r.is_anomaly)
        if r.event_started is not None:
            starts.append(r.event_started.start_frame)
    det.close()
    assert not any(flags[: first - 1]), "an event on the normal frames before the anomaly"
    assert len(starts) == 1 and any(flags[first - 1 : last]), starts


def write_frames(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f)
    return folder


def moving(n: int, h: int = 48, w: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 80, (h, w), np.uint8)
    for t in range(n):
        f = bg.copy()
        x = (3 * t) % (w - 8)
        f[10:20, x : x + 8] = 230
        yield f


def fit_cli(*args):
    return CliRunner().invoke(cli, ["fit", *map(str, args), "--quiet"])


def assert_user_error(res, message):
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output


def test_too_short(tmp_path):
    clip = write_frames(tmp_path / "cam", moving(600))  # one video needs 1040 frames
    assert_user_error(fit_cli(clip, "--fps", 10, "--out", tmp_path / "b"), "footage too short")


def test_unreadable(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    res = fit_cli(bad, "--out", tmp_path / "b")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output


def test_mixed_sizes(tmp_path):
    a = write_frames(tmp_path / "a", moving(600))
    b = write_frames(tmp_path / "b", moving(600, h=40, w=64))
    assert_user_error(fit_cli(a, b, "--fps", 10, "--out", tmp_path / "out"), "mixed frame sizes")


def test_no_motion(tmp_path):
    still = np.random.default_rng(0).integers(0, 255, (48, 64), np.uint8)
    clip = write_frames(tmp_path / "still", [still] * 1100)
    assert_user_error(fit_cli(clip, "--fps", 10, "--out", tmp_path / "b"), "no motion")


def test_frame_folder_needs_fps(tmp_path):
    clip = write_frames(tmp_path / "cam", moving(20))
    assert_user_error(fit_cli(clip, "--out", tmp_path / "b"), "pass --fps")


def test_base_default_refused_and_cuda_without_gpu(tmp_path, monkeypatch):
    import torch

    clip = write_frames(tmp_path / "cam", moving(20))
    assert_user_error(fit_cli(clip, "--fps", 10, "--base", "default", "--out", tmp_path / "b"), "no torch checkpoint")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert_user_error(fit_cli(clip, "--fps", 10, "--device", "cuda", "--out", tmp_path / "b"), "sees no CUDA GPU")


def test_interrupt_keeps_best_and_exports(scene, tmp_path, monkeypatch):
    import vadedge.train.fit as fit_mod
    from vadedge import load_bundle

    calls = {"n": 0}
    real = fit_mod._to

    def interrupt_in_second_epoch(batch, device):
        calls["n"] += 1
        if calls["n"] == 100:  # 59 training batches, 29 validation batches, then 11 more training batches
            raise KeyboardInterrupt
        return real(batch, device)

    monkeypatch.setattr(fit_mod, "_to", interrupt_in_second_epoch)
    report = fit_mod.fit(
        [scene], tmp_path / "b", fps=10, budget_min=5, model_overrides=TINY, progress=False, precision="int8"
    )
    assert report.interrupted and report.steps == 70 and len(report.history) == 1  # best: after epoch 1
    b = load_bundle(report.bundle)
    assert b.precision == "int8" and b.manifest.score.threshold is not None


def test_split_rule():
    from vadedge.train.fit import _Footage, calibration_pieces, split_videos

    one = [_Footage("cam", list(range(1000)))]
    train, held = split_videos(one)
    assert len(train[0].frames) == 800 and held[0].frames == list(range(800, 1000))
    assert [len(p.frames) for p in calibration_pieces(held)] == [100, 100]
    six = [_Footage(f"v{i}", [0] * 100) for i in range(6)]
    train, held = split_videos(six)
    assert [v.name for v in held] == ["v4", "v5"] and len(train) == 4  # 200 of 600 frames >= 25 %
    uneven = [_Footage("a", [0] * 100), _Footage("b", [0] * 300)]
    train, held = split_videos(uneven)
    assert [v.name for v in train] == ["a"] and [v.name for v in held] == ["b"]  # one is always left to train


def test_cli_exit_130_after_interrupted_export(scene, tmp_path, monkeypatch):
    import vadedge.train.fit as fit_mod

    class Interrupted:
        interrupted = True

        def format(self):
            return "fitted (interrupted)"

    monkeypatch.setattr(fit_mod, "fit", lambda *a, **k: Interrupted())
    res = fit_cli(scene, "--fps", 10, "--out", tmp_path / "b")
    assert res.exit_code == 130 and "interrupted" in res.output


def test_video_files_train_at_their_lowest_rate(tmp_path):
    from vadedge.calibration.recalibrate import collect_footage
    from vadedge.synthetic import write_video
    from vadedge.train.fit import _fit_rate, _read

    frames = np.stack([np.dstack([f] * 3) for f in moving(60)])
    slow = write_video(tmp_path / "slow.avi", frames[:30], fps=15)
    fast = write_video(tmp_path / "fast.avi", frames, fps=30)
    items = collect_footage([slow, fast])
    rate = _fit_rate(items, None)
    assert rate == pytest.approx(15.0)
    videos = _read(items, rate)
    assert [len(v.frames) for v in videos] == [30, 30]  # the 30 fps video sampled every 2nd frame
