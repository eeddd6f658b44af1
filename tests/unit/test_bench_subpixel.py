"""The sub-pixel rewrite tried in docs/benchmarks.md is exact: ConvTranspose(k3, s2, p1, op1) ==
Conv(2x2, 4·C_out) + DepthToSpace(2, CRD), checked in ONNX Runtime on random weights."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _model(cin: int, cout: int, bias: bool):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((cin, cout, 3, 3)).astype(np.float32), "w")]
    ins = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b"))
        ins.append("b")
    node = helper.make_node("ConvTranspose", ins, ["y"], name="up", kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1], output_padding=[1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 5, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 10, 14])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.mark.parametrize("bias", [True, False])
def test_subpixel_rewrite_matches_conv_transpose(bias):
    from vadedge.bench.subpixel import convtranspose_to_subpixel

    m = _model(3, 4, bias)
    r = convtranspose_to_subpixel(m)
    assert [n.op_type for n in r.graph.node] == ["Conv", "DepthToSpace"]
    onnx.checker.check_model(r)
    x = np.random.default_rng(2).standard_normal((1, 3, 5, 7)).astype(np.float32)
    def run(model):
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"x": x})[0]

    a, b = run(m), run(r)
    assert a.shape == b.shape == (1, 4, 10, 14)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
