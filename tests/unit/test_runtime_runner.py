"""`StreamRunner`, the one state-carrying stream loop: its components equal `Detector`'s frame by frame and
those of a hand-written ONNX Runtime loop over graph tensor names (what the removed `OnnxStream` did)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import BundleError, load_bundle  # noqa: E402
from vadedge.preprocess import prepare_frame  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402
from vadedge.runtime.runner import StreamRunner  # noqa: E402

H, W, T = 32, 40, 11
VARIANTS = {
    "batch1": dict(batch=1),
    "static-batch2-shared-params": dict(batch=2, params="shared"),
    "dynamic-batched-params": dict(batch="dynamic", params="batched"),
    "flow-side-input": dict(batch=1, flow={"name": "farneback"}),
}


def _frames(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), np.uint8)


def _reference(bundle, prepared):
    """The graph fed by hand with tensor names, memory_out carried into memory_in, slot 0 read."""
    g = bundle.manifest.graph
    b = g.static_batch or 1
    sess = ort.InferenceSession(str(bundle.model_file("fp32")), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    n = bundle.clip_length
    mem = np.repeat(bundle.state["memory"][None], b, axis=0)
    flow = None
    if g.side_inputs:
        from vadedge.flow import get_flow_provider

        flow = get_flow_provider(dict(g.side_inputs[0].provider))
    out = {c: [] for c in g.scores}
    for t in range(n - 1, len(prepared)):
        clip = np.repeat(prepared[None, t - n + 1 : t + 1], b, axis=0)
        feeds = {"frames": clip, "memory_in": mem}
        if g.params:
            p = bundle.state["proto"]
            feeds["proto_in"] = np.repeat(p[None], b, axis=0) if len(shapes["proto_in"]) == 2 else p
        if flow is not None:
            feeds["flow"] = flow.clip_flow(clip)
        res = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        mem = res["memory_out"]
        for c, tensor in g.scores.items():
            out[c].append(float(res[tensor][0]))
    return {c: np.asarray(v) for c, v in out.items()}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_runner_detector_and_hand_loop_agree(tmp_path, variant):
    path = make_toy_bundle(tmp_path / variant, height=H, width=W, **VARIANTS[variant])
    bundle = load_bundle(path)
    raw = _frames()
    det = Detector.load(path, backend="onnxruntime")
    prepared = np.stack([prepare_frame(f, det.spec) for f in raw])

    got = StreamRunner.from_bundle(bundle).score_frames(prepared)
    via_detector = det.runner.score_frames(prepared)
    results = [det.process(f) for f in raw]
    streamed = {c: np.asarray([r.components[c] for r in results if not r.warmup]) for c in got}
    want = _reference(bundle, prepared)

    assert len(got["psnr"]) == T - bundle.clip_length + 1
    for c in want:
        np.testing.assert_array_equal(got[c], streamed[c], err_msg=c)  # same loop, same numbers
        np.testing.assert_array_equal(got[c], via_detector[c], err_msg=c)
        np.testing.assert_allclose(got[c], want[c], rtol=1e-6, atol=1e-7, err_msg=c)


def test_step_uses_state_names_and_carries_state(tmp_path):
    path = make_toy_bundle(tmp_path / "b", batch="dynamic", height=H, width=W)
    runner = StreamRunner.from_bundle(load_bundle(path))
    assert runner.state_names == ["memory"] and runner.batch is None
    state = runner.batched_state(3)
    assert state["memory"].shape == (3, 4, 8)
    state["memory"][0] += 1  # a copy: the runner's initial state is untouched
    assert not np.array_equal(runner.initial_state()["memory"], state["memory"][0])
    clips = np.zeros((3, runner.clip_length, H, W, 1), np.uint8)
    out = runner.step(clips, state)
    assert set(out.state) == {"memory"} and out.scores["psnr"].shape == (3,)
    assert out.extras["error_map"].shape == (3, H, W)


def test_for_model_needs_every_initial_value(tmp_path):
    path = make_toy_bundle(tmp_path / "b", height=H, width=W)
    b = load_bundle(path)
    with pytest.raises(BundleError, match="memory"):
        StreamRunner.for_model(b.model_file("fp32"), b.manifest.graph, b.clip_length, {})
    runner = StreamRunner.for_model(b.model_file("fp32"), b.manifest.graph, b.clip_length, b.state)
    frames = np.stack([prepare_frame(f, b.input_spec) for f in _frames(1)])
    np.testing.assert_array_equal(
        runner.score_frames(frames)["psnr"], StreamRunner.from_bundle(b).score_frames(frames)["psnr"]
    )
