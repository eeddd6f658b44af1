"""MAAM-Net exports to ONNX with the flow as a graph input, and ONNX Runtime matches torch.

The project's exporter (vadedge.export) wraps `stream_step(frames, state)`; MAAM-Net additionally
needs its `side_inputs` (here `flow`) as graph inputs, so this test uses its own small wrapper with
the contract's names (inputs `frames`, `flow`; one [B] output per score component; `error_map`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadedge.train import create_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class _Graph(torch.nn.Module):
    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, flow: torch.Tensor):
        out = self.model.stream_step(frames, {}, flow=flow)
        return (*[out["scores"][k] for k in self.model.score_components], out["aux"]["error_map"])


def test_onnx_export_with_flow_input(tmp_path):
    torch.manual_seed(0)
    model = create_model("maam-net", "edge-xs").eval()
    s = model.spec
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(
        0, 256, (1, model.clip_length, s.height, s.width, s.channels), dtype=torch.uint8, generator=g
    )
    flow = model.host_inputs(frames)["flow"]
    graph = _Graph(model).eval()
    names = list(model.score_components) + ["error_map"]
    with torch.no_grad():
        expected = [t.numpy() for t in graph(frames, flow)]
    path = tmp_path / "maam.onnx"
    torch.onnx.export(
        graph,
        (frames, flow),
        str(path),
        dynamo=True,
        input_names=["frames", "flow"],
        output_names=names,
        opset_version=18,
        external_data=False,
    )
    graph.eval()
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["frames", "flow"]
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx"}  # standard ops only
    assert "ConvTranspose" in {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(names, {"frames": frames.numpy(), "flow": flow.numpy()})
    for name, a, b in zip(names, got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=name)
