"""Lai exports through the project's exporter: MemoryRead node, no diff decoder, ONNX Runtime ≡ torch."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vadedge.train import create_model  # noqa: E402

pytestmark = pytest.mark.slow


def test_lai_exports_stateless_with_memory_read(tmp_path):
    from vadedge.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = create_model("lai", "edge-xs", height=32, width=32, memory_size=12).eval()
    info = export_onnx(model, model.initial_state(), tmp_path / "lai.onnx", error_map=False)
    assert info.state == [] and info.scores == {"psnr": "psnr", "feature_distance": "feature_distance"}
    proto = onnx.load(str(tmp_path / "lai.onnx"))
    assert [i.name for i in proto.graph.input] == ["frames"]
    assert ("vadedge", "MemoryRead") in {(n.domain, n.op_type) for n in proto.graph.node}
    convs = sum(n.op_type in ("Conv", "ConvTranspose") for n in proto.graph.node)
    assert convs == 8 + 12  # encoder (4×2) + prediction decoder (2 + 2×2 + 3 up + 3 head); no diff decoder
    frames = torch.randint(0, 256, (1, 5, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(str(tmp_path / "lai.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["psnr", "feature_distance"], {"frames": frames.numpy()})
    with torch.no_grad():
        want = model.stream_step(frames, {})["scores"]
    np.testing.assert_allclose(got[0], want["psnr"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1], want["feature_distance"].numpy(), rtol=1e-4, atol=1e-4)
