"""Detector on hand-made ONNX bundles: batching == separate runs, state isolation, reset, params, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import BundleError  # noqa: E402
from vadedge.errors import ConfigError, DataError, VadedgeError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402

CALIB = {"psnr": {"location": 45.0, "scale": 5.0}, "feature_distance": {"location": 0.04, "scale": 0.02}}


@pytest.fixture
def toy(tmp_path):
    def make(**kw):
        kw.setdefault("calibration", CALIB)
        kw.setdefault("threshold", (1.0, 0.5))
        return make_toy_bundle(tmp_path / f"toy{len(list(tmp_path.iterdir()))}", **kw)

    return make


def videos(n_streams=3, n_frames=14, seed=0):
    """Per-stream random videos of different sizes, with a burst of motion in the middle of some."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_streams):
        h, w = 40 + 8 * s, 48 + 4 * s
        base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        vid = []
        for t in range(n_frames):
            noise = rng.integers(0, 8 + 60 * (s % 2) * (5 <= t <= 9), (h, w, 3))
            vid.append(np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8))
        out.append(vid)
    return out


def run_separately(bundle, vids):
    res = []
    for v in vids:
        det = Detector.load(bundle)
        res.append([det.process(f) for f in v])
        res[-1].append(det.stream("default").state["memory"].copy())
    return res


def run_batched(bundle, vids):
    det = Detector.load(bundle)
    handles = [det.stream(f"cam{i}") for i in range(len(vids))]
    res = [[] for _ in vids]
    for t in range(len(vids[0])):
        out = det.process_many({h: v[t] for h, v in zip(handles, vids)})
        for i, h in enumerate(handles):
            res[i].append(out[h.name])
    for i, h in enumerate(handles):
        res[i].append(h.state["memory"].copy())
    return det, res


def assert_same(a, b, index_offset=0):
    assert len(a) == len(b)
    for ra, rb in zip(a[:-1], b[:-1]):
        assert ra.warmup == rb.warmup and ra.frame_index + index_offset == rb.frame_index
        assert ra.is_anomaly == rb.is_anomaly
        assert (ra.event_started is None) == (rb.event_started is None)
        assert (ra.event_ended is None) == (rb.event_ended is None)
        if ra.score is None:
            assert rb.score is None
            continue
        assert rb.score == pytest.approx(ra.score, rel=1e-6, abs=1e-6)
        for c in ra.components:
            assert rb.components[c] == pytest.approx(ra.components[c], rel=1e-6, abs=1e-7)
        np.testing.assert_allclose(rb.heatmap, ra.heatmap, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(b[-1], a[-1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("batch, calls_per_step", [("dynamic", 1), (2, 2), (1, 3)])
def test_batched_streams_match_separate_runs(toy, batch, calls_per_step):
    vids = videos()
    separate = run_separately(toy(batch=1), vids)
    det, batched = run_batched(toy(batch=batch), vids)
    for a, b in zip(separate, batched):
        assert_same(a, b)
    scored_steps = len(vids[0]) - (det.clip_length - 1)
    assert det.calls == scored_steps * calls_per_step
    assert any(r.is_anomaly for r in batched[1][:-1])  # the moving stream raised an event
    assert not any(r.is_anomaly for r in batched[0][:-1])


def test_state_is_isolated_between_streams(toy):
    vids = videos(2)
    det = Detector.load(toy(batch="dynamic"))
    a, b = det.stream("a"), det.stream("b")
    m0 = b.state["memory"].copy()
    for f in vids[0]:
        a.process(f)
    np.testing.assert_array_equal(b.state["memory"], m0)  # untouched while only a runs
    assert not np.allclose(a.state["memory"], m0)
    alone = Detector.load(toy(batch="dynamic"))
    rb = [b.process(f) for f in vids[1]]
    ra = [alone.process(f) for f in vids[1]]
    assert_same(ra + [alone.stream("default").state["memory"]], rb + [b.state["memory"]])


def test_reset_restarts_a_stream_like_a_fresh_one(toy):
    vid = videos(2)[1]  # motion in frames 5-9
    det = Detector.load(toy())
    events = []
    det.on_event(events.append)
    for f in vid[:8]:
        det.process(f)
    assert det.stream("default").scorer.tracker.open_event is not None
    closed = det.reset()
    assert closed is not None and closed.reason == "reset" and closed.end_frame == 7
    again = [det.process(f) for f in vid]
    det.finish()
    fresh_det = Detector.load(toy())
    fresh = [fresh_det.process(f) for f in vid]
    assert again[0].warmup
    assert_same(
        fresh + [fresh_det.stream("default").state["memory"]],
        again + [det.stream("default").state["memory"]],
        index_offset=8,
    )
    assert [(e.is_open, e.reason) for e in events] == [
        (True, None),
        (False, "reset"),
        (True, None),
        (False, "stream_end"),
    ]


def test_event_callbacks_fire_on_start_and_end(toy):
    vids = videos(2)
    det = Detector.load(toy(min_event_frames=2))
    starts, ends = [], []
    det.on_event(starts.append, when="start")
    det.on_event(ends.append, when="end")
    for f in vids[1]:
        det.process(f)
    det.finish()
    assert len(starts) >= 1 and len(ends) == len(starts)
    assert all(e.is_open for e in starts) and not any(e.is_open for e in ends)
    assert [e.id for e in starts] == [e.id for e in ends]
    assert all(e.frames >= 2 for e in ends)


def test_bad_frames_raise_clear_errors_and_change_nothing(toy):
    det = Detector.load(toy(batch="dynamic"))
    a, b = det.stream("a"), det.stream("b")
    good = np.zeros((40, 48, 3), np.uint8)
    a.process(good)
    b.process(good)
    with pytest.raises(DataError, match="uint8"):
        a.process(np.zeros((40, 48, 3), np.float32))
    with pytest.raises(DataError, match="numpy"):
        a.process([[1, 2], [3, 4]])
    with pytest.raises(DataError, match="shape"):
        a.process(np.zeros((40, 48, 5), np.uint8))
    with pytest.raises(DataError, match="reset"):
        a.process(np.zeros((80, 96, 3), np.uint8))  # resolution changed mid-stream
    with pytest.raises(DataError, match="empty"):
        a.process(np.zeros((0, 48, 3), np.uint8))
    with pytest.raises(DataError):
        det.process_many({a: good, b: np.zeros((40, 48), np.float64)})
    assert a.frame_index == 0 and b.frame_index == 0  # the failed batch changed neither stream
    a.reset()
    a.process(np.zeros((80, 96, 3), np.uint8))  # a new resolution is fine after reset
    gray = Detector.load(toy()).process(np.zeros((40, 48), np.uint8))
    assert gray.warmup


def test_corrupt_or_missing_bundles_are_user_errors(toy, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Detector.load(tmp_path / "nope")
    b = toy()
    (b / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(BundleError, match="cannot load"):
        Detector.load(b)
    b2 = toy()
    (b2 / "vadedge.json").write_text("{ broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        Detector.load(b2)
    b3 = toy()
    doc = json.loads((b3 / "vadedge.json").read_text())
    doc["graph"]["scores"]["psnr"] = "no_such_output"
    (b3 / "vadedge.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"outputs \['no_such_output'\] that the graph does not have"):
        Detector.load(b3)
    b4 = toy()
    (b4 / "state.npz").unlink()
    with pytest.raises(BundleError, match="state file"):
        Detector.load(b4)


def test_bad_options(toy):
    b = toy()
    with pytest.raises(ConfigError, match="backend"):
        Detector.load(b, backend="openvino")
    with pytest.raises(ConfigError, match="CUDAExecutionProvider"):
        Detector.load(b, backend="onnxruntime", device="cuda:0")
    with pytest.raises(ConfigError, match="device"):
        Detector.load(b, backend="onnxruntime", device="tpu")
    with pytest.raises(ConfigError, match="off"):
        Detector.load(b, threshold=(1.0, 2.0))
    with pytest.raises(ConfigError, match="only MPN"):
        Detector.load(b, adapt_k=3)
    with pytest.raises(ConfigError, match="only MPN"):
        Detector.load(b).adapt("default", clips=np.zeros((1, 5, 32, 32, 1), np.uint8))
    assert issubclass(ConfigError, VadedgeError)


@pytest.mark.parametrize("params", ["batched", "shared"])
def test_adapted_parameters_are_per_stream(toy, monkeypatch, params):
    import vadedge.runtime.adaptation as adaptation

    calls = []

    def fake_adapt(bundle, clips, base):
        calls.append(clips.shape)
        return {"proto": np.full(4, 0.5, np.float32)}

    monkeypatch.setattr(adaptation, "adapt_parameters", fake_adapt)
    vids = videos(2)
    det = Detector.load(toy(batch="dynamic", params=params), adapt_k=2)
    a, b = det.stream("a"), det.stream("b")
    ref = Detector.load(toy(batch="dynamic", params=params))
    ra = []
    for t, (fa, fb) in enumerate(zip(vids[0], vids[1])):
        out = det.process_many({a: fa, "b": fb} if t < 8 else {a: fa})
        ra.append((out["a"], ref.process(fa)))
    assert calls == [(2, 5, 32, 32, 1)] * 2  # each stream adapted once on its first 2 clips
    assert a.adapted and b.adapted and a.params is not b.params
    n = det.clip_length
    for t, (got, want) in enumerate(ra):
        if t < n + 1:  # before adaptation took effect: same as the unadapted reference
            assert got.score == want.score or (got.score is None and want.score is None)
        else:  # afterwards feature_distance carries +0.5 (the mean of the adapted proto)
            assert got.components["feature_distance"] == pytest.approx(
                want.components["feature_distance"] + 0.5, rel=1e-5
            )


def test_adaptation_needs_torch_and_a_checkpoint(toy):
    det = Detector.load(toy(params="batched"))
    clips = np.zeros((1, 5, 32, 32, 1), np.uint8)
    with pytest.raises(VadedgeError, match="checkpoint|torch"):
        det.adapt("default", clips=clips)
    with pytest.raises(DataError, match="clips must be uint8"):
        det.adapt("default", clips=np.zeros((1, 5, 32, 32, 3), np.uint8))


def test_side_inputs_are_computed_once_per_frame_on_the_host(toy, monkeypatch):
    pytest.importorskip("vadedge.flow")
    import onnxruntime as ort

    from vadedge.flow import get_flow_provider

    cfg = {"name": "farneback"}
    bundle = toy(batch="dynamic", flow=cfg)
    det = Detector.load(bundle)
    provider = det.runner.side_providers["flow"]
    calls = []
    real = type(provider).__call__
    monkeypatch.setattr(type(provider), "__call__", lambda self, a, b: (calls.append(1), real(self, a, b))[1])
    vids = videos(2, n_frames=9)
    hs = [det.stream("a"), det.stream("b")]
    outs = [det.process_many({h: v[t] for h, v in zip(hs, vids)}) for t in range(9)]
    assert len(calls) == 2 * 8  # one flow per stream per new frame, never recomputed per clip
    # reference: feed the graph by hand with clip_flow of each clip from a fresh provider
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    ref_provider = get_flow_provider(cfg)
    from vadedge.preprocess import prepare_frame

    mem = det.bundle.state["memory"][None]
    for t in range(det.clip_length - 1, 9):
        clip = np.stack([prepare_frame(f, det.spec) for f in vids[1][t - det.clip_length + 1 : t + 1]])[None]
        psnr, fd, mem, _ = sess.run(None, {"frames": clip, "memory_in": mem, "flow": ref_provider.clip_flow(clip)})
        assert outs[t]["b"].components["feature_distance"] == pytest.approx(float(fd[0]), rel=1e-5)
    det.reset("a")
    assert not det.stream("a").side_history["flow"] and det.stream("a")._prev is None


def test_the_bundles_exported_precision_is_the_default(toy):
    import shutil

    b = toy()
    shutil.copy(b / "model.onnx", b / "model.int8.onnx")
    doc = json.loads((b / "vadedge.json").read_text())
    doc["models"]["int8"] = "model.int8.onnx"
    doc["precision"] = "int8"
    (b / "vadedge.json").write_text(json.dumps(doc))
    assert Detector.load(b).backend.precision == "int8"
    assert Detector.load(b, precision="fp32").backend.precision == "fp32"
    with pytest.raises(BundleError, match="no fp16 model"):
        Detector.load(b, precision="fp16")
