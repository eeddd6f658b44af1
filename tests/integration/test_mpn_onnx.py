"""The adapted parameters are graph inputs: ONNX Runtime fed θ' gives the torch scores of θ'."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vadedge.train.adapt import adapt  # noqa: E402
from vadedge.train.models.mpn_graph import MPNWithParams, export_onnx, param_input_name  # noqa: E402
from vadedge.train.registry import create_model  # noqa: E402

pytestmark = pytest.mark.slow


def test_onnx_runtime_takes_adapted_parameters_as_inputs(tmp_path):
    torch.manual_seed(0)
    model = create_model("mpn", "edge-xs", height=32, width=32).eval()
    path = export_onnx(model, tmp_path / "mpn.onnx", with_pred=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = MPNWithParams(model, with_pred=True)
    assert [i.name for i in sess.get_inputs()] == wrapper.input_names
    assert [o.name for o in sess.get_outputs()] == ["psnr", "feature_distance", "pred"]
    assert param_input_name("dpu.weight") in wrapper.input_names

    g = torch.Generator().manual_seed(1)
    shots = torch.randint(0, 256, (2, 5, 32, 32, 1), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        for a in model.alphas().values():
            a.fill_(0.05)
    theta = adapt(model, model.adaptable_parameters(), model.alphas(), shots)
    frames = torch.randint(0, 256, (1, 5, 32, 32, 1), dtype=torch.uint8, generator=g)
    feeds = {"frames": frames.numpy(), **{param_input_name(n): theta[n].numpy() for n in wrapper.names}}
    got = sess.run(None, feeds)
    with torch.no_grad():
        want = model.stream_step(frames, {}, params=theta)
        base = model.stream_step(frames, {})
    np.testing.assert_allclose(got[0], want["scores"]["psnr"].numpy(), rtol=1e-4)
    np.testing.assert_allclose(got[1], want["scores"]["feature_distance"].numpy(), rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(got[2], want["pred"].numpy(), atol=1e-4)
    assert abs(float(got[0][0]) - float(base["scores"]["psnr"][0])) > 1e-4  # θ' really changed the output
