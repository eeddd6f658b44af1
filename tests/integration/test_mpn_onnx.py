"""The adapted parameters are graph inputs: an exported MPN bundle run by ONNX Runtime with θ' fed per
call gives the torch scores of θ' (checkpoint → `vadedge.export.export_bundle` → ONNX Runtime)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vadedge.train.adapt import adapt  # noqa: E402
from vadedge.train.checkpoint import save_checkpoint  # noqa: E402
from vadedge.train.registry import get_model_entry, resolve_config  # noqa: E402

pytestmark = pytest.mark.slow


def test_onnx_runtime_takes_adapted_parameters_as_inputs(tmp_path):
    from vadedge.export import export_bundle

    torch.manual_seed(0)
    cfg = resolve_config("mpn", "edge-xs", {"height": 32, "width": 32})
    model = get_model_entry("mpn").build(cfg["model"]).eval()
    with torch.no_grad():
        for a in model.alphas().values():
            a.fill_(0.05)
    save_checkpoint(tmp_path / "ckpt", model, {}, cfg)
    bundle = export_bundle(
        tmp_path / "ckpt", tmp_path / "bundle", score_data=False, error_map=False, progress=False, threads=1
    )
    graph = json.loads((bundle / "vadedge.json").read_text())["graph"]
    params = {p["name"]: p["input"] for p in graph["params"]}
    assert list(params) == model.adaptable_names  # θ by its torch names (TensorRT refits by them too)

    g = torch.Generator().manual_seed(1)
    theta = adapt(
        model,
        model.adaptable_parameters(),
        model.alphas(),
        torch.randint(0, 256, (2, 5, 32, 32, 1), dtype=torch.uint8, generator=g),
    )
    frames = torch.randint(0, 256, (1, 5, 32, 32, 1), dtype=torch.uint8, generator=g)
    sess = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"frames": frames.numpy(), **{params[n]: theta[n].numpy() for n in params}}
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds)))
    with torch.no_grad():
        want = model.stream_step(frames, {}, params=theta)["scores"]
        base = model.stream_step(frames, {})["scores"]
    np.testing.assert_allclose(got["psnr"], want["psnr"].numpy(), rtol=1e-4)
    np.testing.assert_allclose(got["feature_distance"], want["feature_distance"].numpy(), rtol=1e-3, atol=1e-7)
    assert abs(float(got["psnr"][0]) - float(base["psnr"][0])) > 1e-4  # θ' really changed the output
