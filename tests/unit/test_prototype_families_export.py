"""Lai and DLAN-AC export through the project's exporter: stateless graphs (frames in), prototypes read by a
`vadedge::MemoryRead` node, Lai without its training-only RGB-difference decoder, ONNX Runtime ≡ torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vadedge.train import create_model  # noqa: E402

pytestmark = pytest.mark.slow

CASES = {
    # name: (config overrides, score components, Conv/ConvTranspose count or None)
    # Lai: encoder (4×2) + prediction decoder (2 + 2×2 + 3 up + 3 head); the diff decoder is absent.
    "lai": ({"memory_size": 12}, ["psnr", "feature_distance"], 8 + 12),
    "dlan-ac": ({"num_prototypes": 5}, ["psnr"], None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exports_stateless_with_memory_read(tmp_path, name):
    from vadedge.export.onnx_export import export_onnx

    overrides, scores, convs = CASES[name]
    torch.manual_seed(0)
    model = create_model(name, "edge-xs", height=32, width=32, **overrides).eval()
    path = tmp_path / "model.onnx"
    info = export_onnx(model, model.initial_state(), path, error_map=False)
    assert info.state == () and info.scores == {s: s for s in scores}
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["frames"]
    assert ("vadedge", "MemoryRead") in {(n.domain, n.op_type) for n in proto.graph.node}
    if convs is not None:
        assert sum(n.op_type in ("Conv", "ConvTranspose") for n in proto.graph.node) == convs
    frames = torch.randint(0, 256, (1, 5, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(scores, {"frames": frames.numpy()})
    with torch.no_grad():
        want = model.stream_step(frames, {})["scores"]
    for name_, value in zip(scores, got):
        np.testing.assert_allclose(value, want[name_].numpy(), rtol=1e-4, atol=1e-4)
