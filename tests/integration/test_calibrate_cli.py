"""`vadedge calibrate` (issue 14 item 5): re-fit a bundle's score statistics and threshold on normal footage.

Toy bundles (tests/fakes) for the command and its errors; the shipped bundle for the demo symptom
(issue 14 item 6: the shipped Ped2 model on a generated scene raises an event from frame 4).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import load_bundle  # noqa: E402
from vadedge.calibration.recalibrate import MIN_FRAMES, min_frames  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.synthetic import SceneGenerator, write_video  # noqa: E402

CALIB = {"psnr": {"location": 40.0, "scale": 4.0}, "feature_distance": {"location": 0.05, "scale": 0.05}}


def calibrate(*args):
    return CliRunner().invoke(cli, ["calibrate", *map(str, args)])


@pytest.fixture
def toy(tmp_path):
    return make_toy_bundle(
        tmp_path / "toy", height=64, width=96, color="bgr", calibration=CALIB, threshold=(3.0, 2.0), smoothing=0.3
    )


def test_calibrate_writes_a_new_bundle_with_provenance(toy, synthetic_root, tmp_path):
    before = (toy / "vadedge.json").read_text()
    res = calibrate(toy, synthetic_root, "--out", tmp_path / "new", "--target-fa", "0.02")
    assert res.exit_code == 0, res.output
    assert "calibrated" in res.output and "224 scored" in res.output  # 4 videos x (60 - 4 warm-up)
    assert (toy / "vadedge.json").read_text() == before  # the source bundle is untouched
    m = load_bundle(tmp_path / "new").manifest
    assert m.score.calibration["psnr"].location != 40.0 and m.score.threshold.target == 0.02
    assert m.score.weights == load_bundle(toy).manifest.score.weights  # weights are kept
    prov = m.provenance["score_calibration"]
    assert prov["tool"] == "vadedge calibrate" and prov["videos"] == 4 and prov["frames"] == 224
    assert prov["previous"]["threshold"]["on"] == 3.0
    text = json.dumps(m.provenance)
    assert str(tmp_path) not in text and str(synthetic_root) not in text  # no absolute paths
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(p.name for p in toy.iterdir())


def test_calibrate_in_place_and_from_video_files(toy, tmp_path):
    gen = SceneGenerator(64, 96, seed=0)
    files = [write_video(tmp_path / f"n{i}.avi", gen.render(60, 100 + i)[0], 30) for i in range(2)]
    res = calibrate(toy, *files, "--in-place", "--target-fa", "0.05")
    # 30 fps files at the toy's 10 fps: 20 frames each, 16 scored: too short for 100 frames
    assert res.exit_code == 2 and "footage too short: 32 scored frames (40 frames at 10 fps" in res.output
    files = [write_video(tmp_path / f"m{i}.avi", gen.render(60, 100 + i)[0], 10) for i in range(2)]
    res = calibrate(toy, *files, "--in-place", "--target-fa", "0.05", "-q")
    assert res.exit_code == 0, res.output
    prov = load_bundle(toy).manifest.provenance["score_calibration"]
    assert prov["data"] == ["m0.avi", "m1.avi"] and prov["frames"] == 112 and prov["sample_fps"] == 10


def test_minimum_footage_is_defined():
    assert min_frames(0.01) == 200 and min_frames(0.1) == MIN_FRAMES == 100


def test_a_graph_without_a_named_component_is_an_error(toy, synthetic_root, tmp_path):
    doc = json.loads((toy / "vadedge.json").read_text())
    doc["graph"]["scores"]["local"] = "local_max"
    doc["score"]["signs"]["local"] = 1
    doc["score"]["weights"]["local"] = 0.5
    doc["score"]["calibration"]["local"] = {"location": 0.0, "scale": 1.0}
    (toy / "vadedge.json").write_text(json.dumps(doc))
    res = calibrate(toy, synthetic_root, "--out", tmp_path / "new")
    assert res.exit_code == 2 and "cannot calibrate" in res.output and "local_max" in res.output, res.output
    assert not (tmp_path / "new").exists()


def test_unreadable_and_missing_footage(toy, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    res = calibrate(toy, bad, "--out", tmp_path / "new")
    assert res.exit_code == 2 and "bad.mp4" in res.output and "Traceback" not in res.output, res.output
    res = calibrate(toy, tmp_path / "nowhere", "--out", tmp_path / "new")
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "notes.txt").write_text("x")
    res = calibrate(toy, tmp_path / "notes.txt", "--out", tmp_path / "new")
    assert res.exit_code == 2 and "not a video file" in res.output
    assert not (tmp_path / "new").exists()


def test_mixed_frame_sizes_are_an_error(toy, tmp_path):
    a = write_video(tmp_path / "a.avi", SceneGenerator(64, 96, seed=0).render(150, 1)[0], 10)
    b = write_video(tmp_path / "b.avi", SceneGenerator(72, 96, seed=0).render(150, 2)[0], 10)
    res = calibrate(toy, a, b, "--out", tmp_path / "new")
    assert res.exit_code == 2 and "mixed frame sizes" in res.output and "96x72" in res.output, res.output


def test_output_choice_errors(toy, synthetic_root, tmp_path):
    assert calibrate(toy, synthetic_root).exit_code == 2
    assert calibrate(toy, synthetic_root, "--out", tmp_path / "x", "--in-place").exit_code == 2
    res = calibrate(toy, synthetic_root, "--out", toy)
    assert res.exit_code == 2 and "already exists" in res.output
    res = calibrate(toy, synthetic_root, "--out", tmp_path / "x", "--target-fa", "0.7")
    assert res.exit_code == 2


def test_the_demo_fits_the_shipped_bundle_to_the_generated_scene(tmp_path, monkeypatch):
    """The demo symptom (issue 14 item 6): the shipped Ped2 model on the generated scene alarmed from
    frame 4 (its statistics are Ped2's). `vadedge demo` on a fresh machine now calibrates a copy of it
    on that scene's normal footage first: no event starts on the clip's normal frames, one covers the
    anomaly, and the shipped bundle itself is left as it was."""
    from vadedge.runtime.demo import synthetic_clip

    monkeypatch.delenv("VADEDGE_DEFAULT_BUNDLE", raising=False)
    shipped = (_shipped() / "vadedge.json").read_text()
    labels = synthetic_clip()[1]
    first, last = int(np.argmax(labels)), len(labels) - 1 - int(np.argmax(labels[::-1]))
    res = CliRunner().invoke(cli, ["demo", "--synthetic", "--out", str(tmp_path / "demo"), "-q"])
    assert res.exit_code == 0, res.output
    assert "fitted to the generated scene: 4 normal videos (300 frames, 284 scored)" in res.output, res.output
    events = [json.loads(line) for line in (tmp_path / "demo" / "events.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["type"] == "end"]
    assert ends and all(e["start_frame"] >= first for e in ends), events
    assert any(e["start_frame"] <= last and e["end_frame"] >= first for e in ends), events
    assert (_shipped() / "vadedge.json").read_text() == shipped
    cal = load_bundle(tmp_path / "demo" / "calibrated-bundle").manifest
    assert cal.provenance["score_calibration"]["tool"] == "vadedge calibrate"


def _shipped():
    from vadedge.runtime.defaults import default_bundle

    return default_bundle()


def test_calibrate_with_a_mask_stores_it_and_calibrates_the_masked_local_component(toy, synthetic_root, tmp_path):
    doc = json.loads((toy / "vadedge.json").read_text())
    doc["score"]["local"] = {"local8": {"source": "error_map", "window": 8}}
    doc["score"]["signs"]["local8"] = -1
    doc["score"]["weights"]["local8"] = 1.0
    doc["score"]["calibration"]["local8"] = {"location": 20.0, "scale": 2.0}
    (toy / "vadedge.json").write_text(json.dumps(doc))
    whole = {"width": 96, "height": 64, "mode": "include", "polygons": [[[0, 0], [48, 0], [48, 64], [0, 64]]]}
    (tmp_path / "mask.json").write_text(json.dumps(whole))
    assert calibrate(toy, synthetic_root, "--out", tmp_path / "plain", "-q").exit_code == 0
    res = calibrate(toy, synthetic_root, "--out", tmp_path / "masked", "--mask", tmp_path / "mask.json", "-q")
    assert res.exit_code == 0, res.output
    plain, masked = (load_bundle(tmp_path / n).manifest.score for n in ("plain", "masked"))
    assert plain.mask is None and masked.mask is not None and masked.mask.width == 96
    assert masked.calibration["local8"] != plain.calibration["local8"]  # the left half only
    assert masked.calibration["psnr"] == plain.calibration["psnr"]
    outside = {**whole, "polygons": [[[0, 0], [200, 0], [200, 64]]]}
    (tmp_path / "bad.json").write_text(json.dumps(outside))
    res = calibrate(toy, synthetic_root, "--out", tmp_path / "x", "--mask", tmp_path / "bad.json")
    assert res.exit_code == 2 and "outside" in res.output, res.output


# ---------------------------------------------------------------------------------- --select
def _degenerate_fd_toy(path):
    """A toy bundle whose feature_distance sits at 1000 + the toy's distance (~0.004 ± 0.004): the graph
    adds the mean of a shared parameter (the MPN-like `proto`, here 1000) to it, so on any footage its
    spread is ~4e-6 of its level, as MNAD's feature distance is after training."""
    toy = make_toy_bundle(
        path, height=64, width=96, color="bgr", calibration=CALIB, threshold=(3.0, 2.0), smoothing=0.3, params="shared"
    )
    state = dict(np.load(toy / "state.npz"))
    state["proto"] = np.full(4, 1000.0, np.float32)
    np.savez(toy / "state.npz", **state)
    return toy


def test_select_drops_a_degenerate_component_and_reports_heldout_false_alarms(toy, synthetic_root, tmp_path):
    res = calibrate(
        _degenerate_fd_toy(tmp_path / "deg"),
        synthetic_root,
        "--out",
        tmp_path / "new",
        "--select",
        "--target-fa",
        "0.02",
    )
    assert res.exit_code == 0, res.output
    assert "dropped feature_distance: relative spread" in res.output and "< 0.1" in res.output, res.output
    assert "held-out normal footage: 1 videos, 56 frames" in res.output and "per hour" in res.output
    m = load_bundle(tmp_path / "new").manifest
    assert m.score.weights == {"psnr": 1.0, "feature_distance": 0.0}
    assert "relative spread" in m.score.dropped["feature_distance"] and set(m.score.dropped) == {"feature_distance"}
    sel = m.provenance["score_selection"]
    assert [v.split("/")[-1] for v in sel["fit_videos"]] == ["01", "02", "03"]
    assert [v.split("/")[-1] for v in sel["heldout_videos"]] == ["04"]
    assert sel["evidence"]["feature_distance"]["relative_spread"] < 1e-4 and sel["heldout"]["frames"] == 56
    assert m.provenance["score_calibration"]["frames"] == 168  # statistics + threshold on the 3 fit videos only
    # the same footage through the healthy toy: both components kept, equal weights
    res = calibrate(toy, synthetic_root, "--out", tmp_path / "healthy", "--select", "--target-fa", "0.02", "-q")
    assert res.exit_code == 0, res.output
    healthy = load_bundle(tmp_path / "healthy").manifest.score
    assert healthy.weights == {"psnr": 0.5, "feature_distance": 0.5} and not healthy.dropped


def test_select_needs_two_videos_and_enough_fit_frames(toy, tmp_path):
    gen = SceneGenerator(64, 96, seed=0)
    one = write_video(tmp_path / "one.avi", gen.render(150, 1)[0], 10)
    res = calibrate(toy, one, "--out", tmp_path / "x", "--select", "--target-fa", "0.05")
    assert res.exit_code == 2 and "at least 2 normal videos" in res.output, res.output
    two = write_video(tmp_path / "two.avi", gen.render(150, 2)[0], 10)
    res = calibrate(toy, one, two, "--out", tmp_path / "x", "--select", "--target-fa", "0.05")
    assert res.exit_code == 0, res.output  # 146 scored frames fitted on one.avi, two.avi held out
    res = calibrate(toy, one, two, "--out", tmp_path / "y", "--select", "--target-fa", "0.01")
    assert res.exit_code == 2 and "146 scored frames in the 1 videos fitted on (1 held out)" in res.output


def test_heldout_split_and_false_alarms_per_hour():
    from vadedge.calibration.recalibrate import heldout_alarms, heldout_count
    from vadedge.scoring import ScoreRecipe

    assert [heldout_count(n) for n in (2, 3, 4, 7, 8, 12)] == [1, 1, 1, 1, 2, 3]
    recipe = ScoreRecipe(
        {"psnr": -1}, {"psnr": 1.0}, {"psnr": (30.0, 1.0)}, smoothing=1.0, on=2.0, off=1.0, min_event_frames=3
    )
    quiet = np.full(600, 30.0)
    bump = quiet.copy()
    bump[100:104] = 26.0  # z = 4 for 4 frames: one alarm
    bump[300:302] = 26.0  # 2 frames: shorter than the minimum event, no alarm
    got = heldout_alarms([{"psnr": quiet}, {"psnr": bump}], recipe, fps=10.0)
    assert got["false_alarms"] == 1 and got["frames"] == 1200
    assert got["false_alarms_per_hour"] == pytest.approx(1 / 120 * 3600)
