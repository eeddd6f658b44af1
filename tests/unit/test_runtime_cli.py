"""`vadedge run` / `vadedge demo` through the CLI with hand-made bundles: outputs, exit codes, errors."""

from __future__ import annotations

import csv

import cv2
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.runtime.sinks import read_events  # noqa: E402
from vadedge.synthetic import SceneGenerator, write_video  # noqa: E402

CALIB = {"psnr": {"location": 40.0, "scale": 4.0}, "feature_distance": {"location": 0.05, "scale": 0.05}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A generated 96x128 scene, 80 frames, with a too-fast object from frame 30, as a video file at the
    toy bundles' frame rate (10 fps, the default), so every frame is scored."""
    frames, labels = SceneGenerator(96, 128, seed=3).render(80, seed=3001, anomaly="speed", anomaly_start=30)
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    write_video(path, frames, fps=10)
    return path, labels


@pytest.fixture
def bundle(tmp_path):
    return make_toy_bundle(tmp_path / "toy", calibration=CALIB, threshold=(2.0, 1.0), min_event_frames=2)


def test_run_writes_events_scores_and_video(clip, bundle, tmp_path):
    path, _ = clip
    out = tmp_path / "out"
    res = CliRunner().invoke(
        cli,
        [
            "run",
            str(path),
            "--model",
            str(bundle),
            "--events",
            str(out / "ev.jsonl"),
            "--scores",
            str(out / "scores.csv"),
            "--save-video",
            str(out / "ann.avi"),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "processed 80 frames" in res.output
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 80 and sum(r["warmup"] == "1" for r in rows) == 4
    recs = read_events(out / "ev.jsonl")
    assert [r["type"] for r in recs].count("start") == [r["type"] for r in recs].count("end")
    cap = cv2.VideoCapture(str(out / "ann.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 80


def test_run_max_frames_and_threshold_override(clip, bundle, tmp_path):
    path, _ = clip
    res = CliRunner().invoke(
        cli,
        [
            "run",
            str(path),
            "-m",
            str(bundle),
            "--max-frames",
            "12",
            "--threshold",
            "-1000",
            "--events",
            str(tmp_path / "e.jsonl"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "processed 12 frames" in res.output
    recs = read_events(tmp_path / "e.jsonl")  # everything is anomalous: one event, closed at the end
    assert [r["type"] for r in recs] == ["start", "end"] and recs[1]["reason"] == "stream_end"
    assert recs[1]["end_frame"] == 11


def test_run_events_append_across_runs_with_persistent_ids(clip, bundle, tmp_path):
    """Issue 16: --events never truncates; every record names the camera and a unique id that
    survives a restart (a second run numbers on)."""
    path, _ = clip
    args = [
        "run",
        str(path),
        "-m",
        str(bundle),
        "--max-frames",
        "12",
        "--threshold",
        "-1000",
        "--camera-name",
        "gate",
        "--events",
        str(tmp_path / "e.jsonl"),
        "-q",
    ]
    for _ in range(2):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
    recs = read_events(tmp_path / "e.jsonl")
    assert [(r["type"], r["camera"], r["seq"], r["event"]) for r in recs] == [
        ("start", "gate", 0, 0),
        ("end", "gate", 0, 0),
        ("start", "gate", 1, 0),
        ("end", "gate", 1, 0),
    ]
    assert recs[0]["id"] == recs[1]["id"] != recs[2]["id"] == recs[3]["id"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.mp4"], "not found"),
        (["run", "/dev/video97"], "no such device"),
        (["run", "{clip}", "--model", "{tmp}/no_bundle"], "does not exist"),
        (["run", "{clip}", "--model", "{tmp}"], "not a vadedge bundle"),
        (["run", "{clip}", "--model", "{bundle}", "--threshold", "1:2"], "OFF <= ON"),
        (
            ["run", "{clip}", "--model", "{bundle}", "--backend", "onnxruntime", "--device", "cuda"],
            "CUDAExecutionProvider",
        ),
        (["run", "{clip}", "--model", "{bundle}", "--adapt-k", "2"], "only MPN"),
    ],
)
def test_user_errors_exit_2(clip, bundle, tmp_path, args, message):
    fill = {"clip": str(clip[0]), "tmp": str(tmp_path), "bundle": str(bundle)}
    res = CliRunner().invoke(cli, [a.format(**fill) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_corrupt_bundle_exit_2(clip, bundle):
    (bundle / "model.onnx").write_bytes(b"\x00garbage")
    res = CliRunner().invoke(cli, ["run", str(clip[0]), "--model", str(bundle)])
    assert res.exit_code == 2 and "cannot load" in res.output


def test_default_bundle_used_when_model_omitted(clip, bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("VADEDGE_DEFAULT_BUNDLE", str(bundle))
    res = CliRunner().invoke(cli, ["run", str(clip[0]), "--max-frames", "6", "-q"])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("VADEDGE_DEFAULT_BUNDLE", str(tmp_path / "empty"))
    res = CliRunner().invoke(cli, ["run", str(clip[0])])
    assert res.exit_code == 2 and "no default model" in res.output and "--model" in res.output


def test_demo_on_a_synthetic_clip(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("VADEDGE_DEFAULT_BUNDLE", str(bundle))
    res = CliRunner().invoke(cli, ["demo", "--synthetic", "--out", str(tmp_path / "demo"), "-q"])
    assert res.exit_code == 0, res.output
    assert "generated synthetic clip" in res.output and "fitted to the generated scene" in res.output
    assert (tmp_path / "demo" / "calibrated-bundle" / "vadedge.json").is_file()
    for name in ("demo.mp4", "scores.csv", "scores.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
    assert (tmp_path / "demo" / "events.jsonl").is_file()
    assert cv2.imread(str(tmp_path / "demo" / "scores.png")) is not None


def test_help_explains_sources():
    res = CliRunner().invoke(cli, ["run", "--help"])
    assert res.exit_code == 0 and "rtsp://" in res.output and "camera0" in res.output
