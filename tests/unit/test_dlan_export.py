"""DLAN-AC exports through the project's exporter: stateless, prototypes read by MemoryRead, ORT ≡ torch."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vadedge.train import create_model  # noqa: E402

pytestmark = pytest.mark.slow


def test_dlan_exports_with_prototypes_as_memory(tmp_path):
    from vadedge.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = create_model("dlan-ac", "edge-xs", height=32, width=32, num_prototypes=5).eval()
    info = export_onnx(model, model.initial_state(), tmp_path / "dlan.onnx", error_map=False)
    assert info.state == [] and info.scores == {"psnr": "psnr"}
    proto = onnx.load(str(tmp_path / "dlan.onnx"))
    assert [i.name for i in proto.graph.input] == ["frames"]
    assert ("vadedge", "MemoryRead") in {(n.domain, n.op_type) for n in proto.graph.node}
    frames = torch.randint(0, 256, (1, 5, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(str(tmp_path / "dlan.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["psnr"], {"frames": frames.numpy()})
    with torch.no_grad():
        want = model.stream_step(frames, {})["scores"]["psnr"]
    np.testing.assert_allclose(got[0], want.numpy(), rtol=1e-4, atol=1e-4)
