"""FP16 pass: regions found from the graph, FP32 I/O kept, chosen regions left in FP32, casts minimal."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vadedge.errors import ConfigError  # noqa: E402
from vadedge.export.fp16 import convert_to_fp16, precision_summary, regions  # noqa: E402


def _toy_model():
    """prep (x/2) → Conv → Relu → Conv (backbone) → squared error vs prep → mean → log (tail)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (1, 4, 3, 3)).astype(np.float32), "w2")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    eps = numpy_helper.from_array(np.array(1e-10, np.float32), "eps")
    axes = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["xp"], name="prep_mul"),
        helper.make_node("Conv", ["xp", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Sub", ["c2", "xp"], ["d"], name="tail_sub"),
        helper.make_node("Mul", ["d", "d"], ["d2"], name="tail_sq"),
        helper.make_node("ReduceMean", ["d2", "axes"], ["mse"], keepdims=0, name="tail_mean"),
        helper.make_node("Max", ["mse", "eps"], ["mse_c"], name="tail_clamp"),
        helper.make_node("Log", ["mse_c"], ["score"], name="tail_log"),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 8, 8])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("c2", TensorProto.FLOAT, [2, 1, 8, 8]),
        ],
        [w1, w2, half, eps, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


def _node_types(model):
    m = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.output)}
    return {n.name: types.get(n.output[0]) for n in m.graph.node}


def test_regions_split_prep_backbone_tail():
    model = _toy_model()
    names = lambda idx: {model.graph.node[i].name for i in idx}  # noqa: E731
    reg = regions(model.graph)
    assert names(reg["heavy"]) == {"conv1", "conv2"}
    assert names(reg["backbone"]) == {"conv1", "relu", "conv2"}
    assert names(reg["prep"]) == {"prep_mul"}
    assert names(reg["tail"]) == {"tail_sub", "tail_sq", "tail_mean", "tail_clamp", "tail_log"}


def test_default_keeps_prep_and_tail_fp32_and_io_types():
    model = _toy_model()
    m16 = convert_to_fp16(model)
    types = _node_types(m16)
    assert types["conv1"] == TensorProto.FLOAT16 and types["conv2"] == TensorProto.FLOAT16
    assert types["relu"] == TensorProto.FLOAT16
    for n in ("prep_mul", "tail_sub", "tail_log"):
        assert types[n] == TensorProto.FLOAT
    assert [o.type.tensor_type.elem_type for o in m16.graph.output] == [TensorProto.FLOAT] * 2
    assert m16.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inits = {i.name: i.data_type for i in m16.graph.initializer}
    assert inits["w1__fp16"] == TensorProto.FLOAT16 and "w1" not in inits  # converted, not cast at run time
    casts = [n for n in m16.graph.node if n.op_type == "Cast"]
    # xp → fp16 once (conv1), c2 → fp32 once (shared by the tail and the graph output)
    assert len(casts) == 2
    x = np.random.default_rng(1).normal(size=(2, 1, 8, 8)).astype(np.float32)
    ref, got = _run(model, x), _run(m16, x)
    np.testing.assert_allclose(got[1], ref[1], atol=2e-2)
    np.testing.assert_allclose(got[0], ref[0], atol=2e-2)


def test_keep_nothing_converts_everything_but_io():
    model = _toy_model()
    m16 = convert_to_fp16(model, keep=())
    counts = precision_summary(m16)
    assert counts["float32"] == 0 and counts["float16"] == len(model.graph.node)
    types = _node_types(m16)
    assert types["tail_log"] == TensorProto.FLOAT16
    out = _run(m16, np.ones((2, 1, 8, 8), np.float32))
    assert out[0].dtype == np.float32


def test_bad_keep_option_and_double_conversion_rejected():
    model = _toy_model()
    with pytest.raises(ConfigError, match="keep"):
        convert_to_fp16(model, keep=("softmax", "everything"))
    with pytest.raises(ConfigError, match="float16"):
        convert_to_fp16(convert_to_fp16(model))
