"""Local error components and the normal-footage component selection (issue 14 item 3).

The scoring core computes them (`vadedge.scoring`), the manifest declares them (`score.local`,
`score.dropped`, `score.paper_weights`), the stream runner adds them to every call's scores.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vadedge.bundle import BundleError, LocalSpec, Manifest
from vadedge.errors import ConfigError, DataError
from vadedge.runtime.backends.base import Backend, BackendOutput, GraphIO
from vadedge.runtime.runner import LocalScores, StreamRunner
from vadedge.scoring import (
    local_components,
    local_error_db,
    select_components,
    window_max_mse,
)


def brute_window_max(m: np.ndarray, k: int) -> float:
    h, w = m.shape
    return max(m[i : i + k, j : j + k].mean() for i in range(h - k + 1) for j in range(w - k + 1))


# ---------------------------------------------------------------------------------- local error
def test_window_max_equals_brute_force_over_every_window():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 7, 9)) ** 4
    for k in (1, 2, 3, 7):
        got = window_max_mse(maps, k)
        assert got.shape == (3,)
        np.testing.assert_allclose(got, [brute_window_max(m, k) for m in maps], rtol=1e-12)


def test_whole_map_window_in_db_is_psnr_and_a_local_blob_raises_the_score():
    rng = np.random.default_rng(1)
    m = rng.random((8, 12)) * 1e-3
    psnr = -10 * np.log10(m.mean())
    whole = local_error_db(m[:8, :8], 8)
    assert whole == pytest.approx(-10 * np.log10(m[:8, :8].mean()), rel=1e-6)  # + DB_EPS
    assert local_error_db(m, 2) < psnr  # a local window is never better than the mean
    blob = m.copy()
    blob[2:4, 5:7] += 0.05  # a small anomalous region: barely moves the mean, dominates the local max
    assert local_error_db(blob, 2) < local_error_db(m, 2) - 10
    assert -10 * np.log10(blob.mean()) > local_error_db(blob, 2) + 5


def test_mask_excludes_masked_cells_from_the_maximum():
    m = np.full((6, 6), 1e-4)
    m[0:2, 0:2] = 1.0  # a clock overlay
    mask = np.ones((6, 6))
    mask[0:2, 0:2] = 0
    assert window_max_mse(m, 2) == pytest.approx(1.0)
    assert window_max_mse(m, 2, mask) == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="mask"):
        window_max_mse(m, 2, np.ones((5, 6)))


def test_local_components_use_model_input_pixels():
    rng = np.random.default_rng(2)
    maps = rng.random((2, 32, 48)).astype(np.float32)
    comps = local_components(maps, {"local8": 8, "local16": 16}, (128, 192))
    np.testing.assert_allclose(comps["local8"], local_error_db(maps, 2))
    np.testing.assert_allclose(comps["local16"], local_error_db(maps, 4))
    with pytest.raises(ConfigError, match="multiple"):
        local_components(maps, {"local6": 6}, (128, 192))
    with pytest.raises(ConfigError, match="uniform"):
        local_components(maps, {"local8": 8}, (128, 190))
    with pytest.raises(ConfigError, match="does not fit"):
        local_components(maps, {"big": 256}, (128, 192))


# ---------------------------------------------------------------------------------- selection
def _video(rng: np.random.Generator, n: int = 200, fd_level: float = 2.5e-6) -> dict[str, np.ndarray]:
    return {
        "psnr": 35 + rng.normal(0, 1.3, n),  # dB: relative spread of the MSE ≈ 0.3
        "local16": 25 + rng.normal(0, 1.5, n),
        "feature_distance": fd_level + rng.normal(0, 1e-8, n),
    }  # energy, near-constant


SIGNS = {"psnr": -1, "local16": -1, "feature_distance": 1}
UNITS = {"psnr": "db", "local16": "db", "feature_distance": "energy"}


def test_a_near_constant_component_is_dropped_and_healthy_ones_kept_with_equal_weights():
    rng = np.random.default_rng(3)
    sel = select_components([_video(rng)], [_video(rng)], SIGNS, UNITS)
    assert set(sel.dropped) == {"feature_distance"}
    assert "relative spread" in sel.dropped["feature_distance"]
    assert sel.weights == {"feature_distance": 0.0, "local16": 0.5, "psnr": 0.5}
    assert sel.evidence["psnr"]["relative_spread"] > 0.1


def test_a_component_whose_statistics_do_not_transfer_is_dropped():
    rng = np.random.default_rng(4)
    fit = _video(rng)
    fit["feature_distance"] = rng.uniform(1.0, 2.0, 200)  # healthy spread on the fitting footage…
    held = _video(rng)
    held["feature_distance"] = rng.uniform(9.0, 10.0, 200)  # …but the held-out normal video sits far above
    sel = select_components([fit], [held], SIGNS, UNITS)
    assert set(sel.dropped) == {"feature_distance"}
    assert "held-out" in sel.dropped["feature_distance"]
    assert sel.evidence["feature_distance"]["heldout_z_median"] > 3


def test_selection_errors_are_clear():
    rng = np.random.default_rng(5)
    v = _video(rng)
    with pytest.raises(DataError, match="held-out"):
        select_components([v], [], SIGNS, UNITS)
    with pytest.raises(ConfigError, match="units"):
        select_components([v], [v], SIGNS, {"psnr": "db"})
    const = {k: np.full(50, 1.0) for k in SIGNS}
    with pytest.raises(DataError, match="every score component"):
        select_components([const], [const], SIGNS, UNITS)


# ---------------------------------------------------------------------------------- manifest
def _manifest_doc() -> dict:
    return {
        "schema_version": 1,
        "family": "toy",
        "preset": None,
        "input": {"height": 32, "width": 48, "color": "gray", "frames": 4, "clip_length": 5},
        "graph": {
            "batch": "dynamic",
            "frames_input": "frames",
            "state": [],
            "params": [],
            "scores": {"psnr": "psnr", "feature_distance": "feature_distance"},
            "extra_outputs": {"error_map": "error_map"},
        },
        "models": {"fp32": "model.onnx"},
        "engines": [],
        "state_file": "state.npz",
        "score": {
            "signs": {"psnr": -1, "feature_distance": 1},
            "weights": {"psnr": 0.6, "feature_distance": 0.4},
            "calibration": None,
            "smoothing": 0.3,
            "threshold": None,
            "min_event_frames": 1,
        },
        "provenance": {"vadedge_version": "0"},
    }


def _with_local(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    s = doc["score"]
    s["local"] = {"local8": {"source": "error_map", "window": 8}}
    s["signs"]["local8"] = -1
    s["weights"] = {"psnr": 0.5, "feature_distance": 0.0, "local8": 0.5}
    s["dropped"] = {"feature_distance": "relative spread 0.007 < 0.1 on normal footage"}
    s["paper_weights"] = {"psnr": 0.6, "feature_distance": 0.4}
    return doc


def test_a_manifest_without_local_fields_reads_and_writes_back_unchanged():
    doc = _manifest_doc()
    m = Manifest.from_dict(doc)
    assert m.score.local == {} and m.score.dropped == {} and m.score.paper_weights is None
    assert m.score.offline_weights == {"psnr": 0.6, "feature_distance": 0.4}
    assert m.to_dict()["score"] == doc["score"]


def test_local_components_in_the_manifest_round_trip_and_are_checked():
    doc = _with_local(_manifest_doc())
    m = Manifest.from_dict(doc)
    assert m.score.local == {"local8": LocalSpec("error_map", 8)}
    assert m.score.offline_weights == {"psnr": 0.6, "feature_distance": 0.4}
    assert Manifest.from_dict(m.to_dict()) == m
    no_map = copy.deepcopy(doc)
    del no_map["graph"]["extra_outputs"]
    with pytest.raises(BundleError, match="does not output"):
        Manifest.from_dict(no_map)
    heavy = copy.deepcopy(doc)
    heavy["score"]["weights"]["feature_distance"] = 0.1
    with pytest.raises(BundleError, match="weight 0"):
        Manifest.from_dict(heavy)
    unknown = copy.deepcopy(doc)
    unknown["score"]["dropped"]["nope"] = "x"
    with pytest.raises(BundleError, match="not score components"):
        Manifest.from_dict(unknown)
    unsigned = copy.deepcopy(doc)
    del unsigned["score"]["signs"]["local8"]
    with pytest.raises(BundleError, match="signs"):
        Manifest.from_dict(unsigned)
    wide = copy.deepcopy(doc)
    wide["score"]["local"]["local8"]["window"] = 64
    with pytest.raises(BundleError, match="exceeds"):
        Manifest.from_dict(wide)


# ---------------------------------------------------------------------------------- runner
class _MapBackend(Backend):
    """Scores and an error map that depend on the clip's last frame (a stand-in graph)."""

    name = "fake"

    def __init__(self, with_map: bool = True) -> None:
        m = Manifest.from_dict(_manifest_doc())
        super().__init__(None, GraphIO.from_manifest(m))
        self.with_map = with_map

    def run(self, frames, state, params=None, side=None) -> BackendOutput:
        last = frames[:, -1, :, :, 0].astype(np.float64) / 255.0
        b = frames.shape[0]
        err = last.reshape(b, 8, 4, 12, 4).mean(axis=(2, 4))  # [B, 8, 12] cells of 4 px
        extras = {"error_map": err} if self.with_map else {}
        return BackendOutput(
            {"psnr": np.full(b, 30.0, np.float32), "feature_distance": np.zeros(b, np.float32)}, {}, extras
        )


def test_the_runner_adds_declared_local_components_from_the_error_map():
    rng = np.random.default_rng(6)
    frames = rng.integers(0, 255, (7, 32, 48, 1), np.uint8)
    plain = StreamRunner(_MapBackend(), {}, 5).score_frames(frames)
    assert set(plain) == {"psnr", "feature_distance"}  # nothing declared: the graph's scores only
    local = LocalScores({"local8": LocalSpec("error_map", 8)}, (32, 48))
    comps = StreamRunner(_MapBackend(), {}, 5, local=local).score_frames(frames)
    np.testing.assert_array_equal(comps["psnr"], plain["psnr"])
    maps = (frames[4:, :, :, 0].astype(np.float64) / 255.0).reshape(3, 8, 4, 12, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(comps["local8"], local_error_db(maps, 2), rtol=1e-6)
    missing = StreamRunner(_MapBackend(with_map=False), {}, 5, local=local)
    with pytest.raises(BundleError, match="error_map"):
        missing.score_frames(frames)


def test_the_shipped_bundle_scores_local_components_through_the_detector():
    """The default bundle declares local8/16/32 from its graph's error map; feature_distance is dropped
    from the causal fusion with its reason, and the paper fusion is kept for `vadedge eval`."""
    pytest.importorskip("onnxruntime")
    from vadedge.runtime.defaults import default_bundle_path
    from vadedge.runtime.detector import Detector
    from vadedge.synthetic import iter_synthetic_videos

    det = Detector.load(default_bundle_path(), backend="onnxruntime", device="cpu", threads=1, heatmap=True)
    score = det.bundle.manifest.score
    assert {n: s.window for n, s in score.local.items()} == {"local8": 8, "local16": 16, "local32": 32}
    assert set(score.dropped) == {"feature_distance"} and score.weights["feature_distance"] == 0
    assert score.paper_weights == {"psnr": 0.6, "feature_distance": 0.4}
    frames, _ = next(iter_synthetic_videos(1, 7, height=240, width=360, seed=7, anomalous=False))
    h = det.stream("s")
    results = [h.process(f) for f in frames]
    scored = [r for r in results if not r.warmup]
    assert len(scored) == 3
    inp = det.bundle.manifest.input
    for r in scored:
        want = local_components(r.heatmap[None], {n: s.window for n, s in score.local.items()}, (inp.height, inp.width))
        assert set(r.components) == {"psnr", "feature_distance", "local8", "local16", "local32"}
        for name, v in want.items():
            assert r.components[name] == pytest.approx(float(v[0]), rel=1e-6)
    det.close()


# ---------------------------------------------------------------------------------- ROI / privacy mask
MASK = {"width": 48, "height": 32, "mode": "exclude", "polygons": [[[0, 0], [8, 0], [8, 8], [0, 8]]]}


def test_mask_polygons_are_validated_with_clear_errors(tmp_path):
    from vadedge.roi import mask_from_dict, read_mask

    assert mask_from_dict(MASK).polygons == (((0.0, 0.0), (8.0, 0.0), (8.0, 8.0), (0.0, 8.0)),)
    outside = copy.deepcopy(MASK)
    outside["polygons"][0][2] = [60, 8]
    with pytest.raises(ConfigError, match=r"\(60, 8\) outside the 48x32 frame"):
        mask_from_dict(outside)
    with pytest.raises(ConfigError, match="3 to"):
        mask_from_dict({**MASK, "polygons": [[[0, 0], [1, 1]]]})
    with pytest.raises(ConfigError, match="mode"):
        mask_from_dict({**MASK, "mode": "blur"})
    with pytest.raises(ConfigError, match="polygons"):
        mask_from_dict({"width": 48, "height": 32})
    bad = tmp_path / "m.json"
    bad.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_mask(bad)


def test_mask_cell_weights_follow_the_polygons_scaled_to_the_model_input():
    from vadedge.roi import cell_weights, mask_from_dict

    # a 96x64 camera frame; the model input is 32x48 (scale 1/2), cells of 4 px
    spec = mask_from_dict({"width": 96, "height": 64, "polygons": [[[0, 0], [16, 0], [16, 16], [0, 16]]]})
    w = cell_weights(spec, (32, 48), 4)
    assert w.shape == (8, 12)
    assert w[0, 0] == 0 and w[1, 1] < 1 and w[4, 4] == 1  # the top-left 8x8 model pixels are ignored
    include = cell_weights(mask_from_dict({**spec.to_dict(), "mode": "include"}), (32, 48), 4)
    np.testing.assert_allclose(include, 1 - w)


def test_a_mask_in_the_manifest_or_at_run_time_silences_a_masked_hot_region():
    from vadedge.roi import mask_from_dict

    frames = np.full((6, 32, 48, 1), 10, np.uint8)
    frames[:, 0:8, 0:8] = 250  # a bright "clock overlay" in the top-left corner
    local = {"local8": LocalSpec("error_map", 8)}
    plain = StreamRunner(_MapBackend(), {}, 5, local=LocalScores(local, (32, 48))).score_frames(frames)
    masked = StreamRunner(_MapBackend(), {}, 5, local=LocalScores(local, (32, 48), mask_from_dict(MASK))).score_frames(
        frames
    )
    assert plain["local8"][0] == pytest.approx(-10 * np.log10(250 / 255), abs=1e-4)
    assert masked["local8"][0] == pytest.approx(-10 * np.log10(10 / 255), abs=1e-4)
    doc = _with_local(_manifest_doc())
    doc["score"]["mask"] = copy.deepcopy(MASK)
    m = Manifest.from_dict(doc)
    assert m.score.mask == mask_from_dict(MASK) and Manifest.from_dict(m.to_dict()) == m
    doc["score"]["mask"]["polygons"][0][0] = [-1, 0]
    with pytest.raises(BundleError, match="outside"):
        Manifest.from_dict(doc)
    no_local = _manifest_doc()
    no_local["score"]["mask"] = copy.deepcopy(MASK)
    with pytest.raises(BundleError, match="declares none"):
        Manifest.from_dict(no_local)


def test_run_mask_outside_the_frame_exits_2(tmp_path):
    from click.testing import CliRunner

    from vadedge.cli import cli

    bad = tmp_path / "mask.json"
    bad.write_text('{"width": 360, "height": 240, "polygons": [[[0, 0], [400, 0], [400, 20]]]}')
    res = CliRunner().invoke(cli, ["run", str(tmp_path / "missing.mp4"), "--mask", str(bad)])
    assert res.exit_code == 2, res.output
    assert "outside the 360x240 frame" in res.output and "Traceback" not in res.output


def test_the_detector_applies_a_run_time_mask_to_the_shipped_bundle():
    pytest.importorskip("onnxruntime")
    from vadedge.roi import cell_weights, mask_from_dict
    from vadedge.runtime.defaults import default_bundle_path
    from vadedge.runtime.detector import Detector
    from vadedge.synthetic import iter_synthetic_videos

    spec = mask_from_dict(
        {"width": 360, "height": 240, "mode": "include", "polygons": [[[0, 120], [180, 120], [180, 240], [0, 240]]]}
    )
    det = Detector.load(default_bundle_path(), backend="onnxruntime", device="cpu", threads=1, mask=spec)
    frames, _ = next(iter_synthetic_videos(1, 5, height=240, width=360, seed=3, anomalous=False))
    r = [det.stream("s").process(f) for f in frames][-1]
    inp = det.bundle.manifest.input
    weights = cell_weights(spec, (inp.height, inp.width), 4)
    want = local_components(r.heatmap[None], {"local16": 16}, (inp.height, inp.width), weights)
    assert r.components["local16"] == pytest.approx(float(want["local16"][0]), rel=1e-6)
    assert r.components["local16"] != pytest.approx(float(local_error_db(r.heatmap, 4)), rel=1e-6)
    det.close()


def test_a_run_time_mask_on_a_bundle_without_local_components_is_a_clear_error(tmp_path):
    from vadedge.bundle import Bundle
    from vadedge.roi import mask_from_dict

    bundle = Bundle(tmp_path, Manifest.from_dict(_manifest_doc()), {})
    assert LocalScores.of(bundle) is None  # no score.local: the graph's scores only, as before
    with pytest.raises(ConfigError, match="no local score components"):
        LocalScores.of(bundle, mask_from_dict(MASK))


def test_info_lists_local_and_dropped_components_of_the_shipped_bundle():
    from click.testing import CliRunner

    from vadedge.cli import cli
    from vadedge.runtime.defaults import default_bundle_path

    res = CliRunner().invoke(cli, ["info", str(default_bundle_path()), "--no-check"])
    assert res.exit_code == 0, res.output
    assert "local16 (-, w=0.25; 16 px window of error_map)" in res.output
    assert "dropped     feature_distance: relative spread" in res.output
