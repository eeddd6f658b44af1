"""`vadedge eval` on a bundle: its streaming scores are the Detector's, frame by frame, at the bundle's
operating point; false alarms per hour and detection delay on a case computed by hand."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("sklearn")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.datasets import open_split  # noqa: E402
from vadedge.metrics import alarm_metrics, runs  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402

CALIB = {"psnr": {"location": 10.0, "scale": 2.0}, "feature_distance": {"location": 0.5, "scale": 0.1}}


@pytest.fixture(scope="module")
def toy_bundle(tmp_path_factory):
    return make_toy_bundle(
        tmp_path_factory.mktemp("b") / "toy",
        batch="dynamic",
        calibration=CALIB,
        threshold=(1.0, 0.5),
        smoothing=0.3,
        min_event_frames=2,
    )


def _csv_rows(path):
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_eval_streaming_scores_equal_detector_scores_frame_by_frame(toy_bundle, synthetic_root, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "eval",
            "--model",
            str(toy_bundle),
            "--data",
            str(synthetic_root),
            "--out",
            str(tmp_path),
            "--quiet",
            "--no-plots",
            "--fps",
            "25",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = _csv_rows(tmp_path / "scores.csv")
    got = {(r["video"], int(r["frame"])): (float(r["score_streaming"]), r["alarm"] == "1") for r in rows}

    det = Detector.load(toy_bundle, backend="onnxruntime")
    want = {}
    for video in open_split(synthetic_root, "testing").videos:
        h = det.stream(video.name)
        for i, frame in enumerate(video.iter_frames()):
            r = h.process(frame, i / 25)
            if not r.warmup:
                want[(video.name, i)] = (r.score, r.is_anomaly)
    assert got == want  # exact: same floats, same alarm flags, same frames

    results = json.loads((tmp_path / "results.json").read_text())
    op = results["operating_point"]
    assert (op["smoothing"], op["on"], op["off"], op["min_event_frames"]) == (0.3, 1.0, 0.5, 2)
    assert results["protocols"]["streaming"]["smoothing"] == 0.3
    alarms = results["protocols"]["streaming"]["alarms"]
    assert alarms["fps"] == 25 and alarms["intervals"] == alarms["detected"] + alarms["missed"] > 0
    assert "false alarm" in res.output and "smoothing 0.3" in res.output


def test_eval_smoothing_overrides_the_operating_point(toy_bundle, synthetic_root, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "eval",
            "--model",
            str(toy_bundle),
            "--data",
            str(synthetic_root),
            "--out",
            str(tmp_path),
            "--quiet",
            "--no-plots",
            "--smoothing",
            "1",
            "--protocol",
            "streaming",
        ],
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["operating_point"]["smoothing"] == 1.0 and "paper" not in results["protocols"]
    rows = _csv_rows(tmp_path / "scores.csv")
    det = Detector.load(toy_bundle, backend="onnxruntime", smoothing=1.0)
    video = open_split(synthetic_root, "testing").videos[0]
    h = det.stream("x")
    want = [r.raw_score for f in video.iter_frames() if not (r := h.process(f)).warmup]
    assert [float(r["score_streaming"]) for r in rows if r["video"] == video.name] == want


def test_runs():
    assert runs(np.array([0, 1, 1, 0, 1])) == [(1, 2), (4, 4)]
    assert runs(np.array([1, 1])) == [(0, 1)] and runs(np.zeros(3)) == []


def test_alarm_metrics_by_hand():
    # video a: anomaly at frames 3..6; alarms 1..1 (false), 5..7 (true: overlaps), 9..9 (false).
    # Scored from frame 0: 6 normal frames (0,1,2,7,8,9). Delay: first flag in 3..6 is frame 5 -> 2 frames.
    a = ("a", np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0]), np.array([0, 1, 0, 0, 0, 1, 1, 1, 0, 1]), 0)
    # video b: warm-up frames 0..1 (never flagged), anomaly 0..2 and 6..7, no alarm at all: both missed.
    # Scored normal frames: 3, 4, 5, 8, 9 -> 5.
    b = ("b", np.array([1, 1, 1, 0, 0, 0, 1, 1, 0, 0]), np.zeros(10, bool), 2)
    m = alarm_metrics([a, b], fps=10.0)
    assert (m["alarms"], m["false_alarms"], m["normal_frames"]) == (3, 2, 11)
    assert m["normal_seconds"] == pytest.approx(1.1)
    assert m["false_alarms_per_hour"] == pytest.approx(2 / 1.1 * 3600)
    assert (m["intervals"], m["detected"], m["missed"]) == (3, 1, 2)
    assert [(i["video"], i["start"], i["end"], i["delay_frames"]) for i in m["per_interval"]] == [
        ("a", 3, 6, 2),
        ("b", 0, 2, None),
        ("b", 6, 7, None),
    ]
    assert m["per_interval"][0]["delay_s"] == pytest.approx(0.2)
    assert m["delay_frames_median"] == 2 and m["delay_s_mean"] == pytest.approx(0.2)


def test_alarm_metrics_flag_on_first_frame_is_zero_delay_and_no_normal_footage_is_nan():
    m = alarm_metrics([("v", np.array([1, 1, 1]), np.array([1, 1, 0]), 0)], fps=5.0)
    assert m["per_interval"][0]["delay_frames"] == 0 and m["false_alarms"] == 0
    assert math.isnan(m["false_alarms_per_hour"])
    with pytest.raises(ValueError):
        alarm_metrics([("v", np.array([1, 0]), np.array([1]), 0)], fps=5.0)


def test_eval_paper_protocol_uses_the_bundles_paper_weights_not_its_causal_weights(
    toy_bundle, synthetic_root, tmp_path
):
    """A re-scored bundle (feature_distance dropped from the causal fusion) keeps the paper fusion in
    score.paper_weights: `vadedge eval --protocol paper` gives the same scores as the original bundle."""
    import shutil

    rescored = tmp_path / "rescored"
    shutil.copytree(toy_bundle, rescored)
    doc = json.loads((rescored / "vadedge.json").read_text())
    original_weights = dict(doc["score"]["weights"])
    doc["score"].update(
        weights={"psnr": 1.0, "feature_distance": 0.0},
        paper_weights=original_weights,
        dropped={"feature_distance": "degenerate on normal footage"},
    )
    (rescored / "vadedge.json").write_text(json.dumps(doc))
    paper = {}
    for name, model in (("original", toy_bundle), ("rescored", rescored)):
        res = CliRunner().invoke(
            cli,
            [
                "eval",
                "--model",
                str(model),
                "--data",
                str(synthetic_root),
                "--out",
                str(tmp_path / name),
                "--quiet",
                "--no-plots",
                "--protocol",
                "paper",
            ],
        )
        assert res.exit_code == 0, res.output
        paper[name] = [float(r["score_paper"]) for r in _csv_rows(tmp_path / name / "scores.csv")]
    assert original_weights != {"psnr": 1.0, "feature_distance": 0.0}
    assert paper["rescored"] == paper["original"]
