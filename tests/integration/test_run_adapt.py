"""MPN few-shot adaptation through the runtime: torch backend on a checkpoint and ONNX Runtime on an
exported bundle (θ' fed as graph inputs) agree with `vadedge.train.adapt` and stay per stream."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from vadedge.runtime import Detector  # noqa: E402
from vadedge.synthetic import SceneGenerator  # noqa: E402

pytestmark = pytest.mark.slow
K = 2


@pytest.fixture(scope="module")
def mpn_checkpoint(tmp_path_factory):
    """An (untrained) MPN edge-xs at 32x32 saved as a checkpoint: enough to exercise the adaptation path."""
    from vadedge.train.checkpoint import save_checkpoint
    from vadedge.train.registry import get_model_entry, list_models, resolve_config

    if "mpn" not in list_models():
        pytest.skip("the mpn family is not registered")
    cfg = resolve_config("mpn", "edge-xs", {"height": 32, "width": 32, "alpha_init": 0.05})
    torch.manual_seed(0)
    model = get_model_entry("mpn").build(cfg["model"]).eval()
    out = tmp_path_factory.mktemp("mpn") / "ckpt"
    save_checkpoint(out, model, model.initial_state(), cfg)
    return out


@pytest.fixture(scope="module")
def frames():
    return list(SceneGenerator(48, 64, seed=5).render(14, seed=5001)[0])


def reference(ckpt, frames):
    """psnr per frame with θ' = adapt(first K clips), computed directly with the training code."""
    from vadedge.preprocess import prepare_frame
    from vadedge.train.adapt import adapt
    from vadedge.train.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt).model
    video = np.stack([prepare_frame(f, model.spec) for f in frames])
    n = model.clip_length
    clips = torch.from_numpy(np.stack([video[i : i + n] for i in range(K)]))
    theta = adapt(model, model.adaptable_parameters(), model.alphas(), clips)
    out = {}
    with torch.inference_mode():
        for t in range(n - 1 + K, len(video)):  # adaptation happens after the K-th clip is scored
            clip = torch.from_numpy(video[t - n + 1 : t + 1][None])
            out[t] = float(model.stream_step(clip, {}, params=theta)["scores"]["psnr"][0])
    return out


def test_torch_and_onnx_adaptation_match_the_training_code(mpn_checkpoint, frames, tmp_path):
    from vadedge.export import export_bundle

    want = reference(mpn_checkpoint, frames)
    det_t = Detector.load(mpn_checkpoint, adapt_k=K, threshold=1e9)
    assert det_t.backend.name == "torch"
    got_t = {r.frame_index: r.components["psnr"] for r in (det_t.process(f) for f in frames) if not r.warmup}
    bundle = export_bundle(mpn_checkpoint, tmp_path / "bundle", batch=1, score_data=False, progress=False)
    det_o = Detector.load(bundle, backend="onnxruntime", adapt_k=K, threshold=1e9)
    assert not det_o.backend.params_batched  # θ' inputs have no batch dimension: one stream per call
    got_o = {r.frame_index: r.components["psnr"] for r in (det_o.process(f) for f in frames) if not r.warmup}
    base = Detector.load(bundle, backend="onnxruntime", threshold=1e9)
    got_b = {r.frame_index: r.components["psnr"] for r in (base.process(f) for f in frames) if not r.warmup}
    for t, w in want.items():
        assert got_t[t] == pytest.approx(w, rel=1e-5)
        assert got_o[t] == pytest.approx(w, rel=1e-4)
    assert any(abs(got_b[t] - want[t]) > 1e-4 for t in want)  # adaptation changed the scores


def test_streams_adapt_independently(mpn_checkpoint, frames):
    det = Detector.load(mpn_checkpoint, adapt_k=K, threshold=1e9)
    a, b = det.stream("a"), det.stream("b")
    other = [np.ascontiguousarray(f[::-1]) for f in frames]  # a different scene for stream b
    for fa, fb in zip(frames, other):
        det.process_many({a: fa, b: fb})
    assert a.adapted and b.adapted and a.params is not b.params
    diffs = [float(np.abs(a.params[k] - b.params[k]).max()) for k in a.params]
    assert max(diffs) > 0
    assert all(np.array_equal(v, det.base_params[k]) for k, v in det.stream("idle").params.items())
