"""The `--plugins` graph pass: vadedge-domain nodes become TensorRT plugin nodes (small hand-built graphs)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from vadedge.export.plugins import PLUGIN_NAMESPACE, PLUGIN_VERSION, plugin_nodes, replace_with_plugins  # noqa: E402


def _identity_fn(name, inputs, outputs, attributes=(), source=0):
    """A placeholder body (every output = a copy of input `source`): the pass ignores bodies."""
    nodes = [helper.make_node("Identity", [inputs[source]], [o]) for o in outputs]
    return helper.make_function(
        "vadedge", name, inputs, outputs, nodes, [helper.make_opsetid("", 17)], attributes=list(attributes)
    )


def _model():
    f32 = lambda n, dims: helper.make_tensor_value_info(n, TensorProto.FLOAT, dims)  # noqa: E731
    nodes = [
        helper.make_node("Relu", ["x"], ["features"], name="relu"),
        helper.make_node(
            "MemoryRead", ["features", "memory_in"], ["query", "read"], domain="vadedge", name="mem_read", eps=1e-12
        ),
        helper.make_node("ReduceMean", ["read"], ["err"], keepdims=0, axes=[1, 2], name="err"),
        helper.make_node("Less", ["err", "thr"], ["gate"], name="gate"),
        helper.make_node(
            "MemoryUpdate", ["query", "memory_in", "gate"], ["memory_out"], domain="vadedge", name="mem_update"
        ),
        helper.make_node("Future", ["read"], ["extra"], domain="vadedge", name="future"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [f32("x", [2, 4, 8]), f32("memory_in", [2, 3, 8])],
        [f32("read", [2, 4, 8]), f32("memory_out", [2, 3, 8]), f32("extra", [2, 4, 8])],
        initializer=[helper.make_tensor("thr", TensorProto.FLOAT, [], [0.5])],
    )
    fns = [
        _identity_fn("MemoryRead", ["features", "memory"], ["query", "read"], ["eps"]),
        _identity_fn("MemoryUpdate", ["query", "memory", "gate"], ["new_memory"], source=1),
        _identity_fn("Future", ["r"], ["o"]),
    ]
    model = helper.make_model(
        graph, functions=fns, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("vadedge", 1)]
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_nodes_become_plugins_with_namespace_and_version():
    model = _model()
    out = replace_with_plugins(model)
    by_name = {n.name: n for n in out.graph.node}
    read, update = by_name["mem_read"], by_name["mem_update"]
    assert (read.op_type, read.domain) == ("VadMemoryRead", "vadedge")
    assert (update.op_type, update.domain) == ("VadMemoryUpdate", "vadedge")
    for node in (read, update):
        attrs = _attrs(node)
        assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode()
        assert attrs["plugin_version"] == PLUGIN_VERSION.encode()
    assert _attrs(read)["eps"] == pytest.approx(1e-12)  # node attributes carried over as PluginFields
    assert list(read.input) == ["features", "memory_in"] and list(read.output) == ["query", "read"]
    assert [n.op_type for n in plugin_nodes(out)] == ["VadMemoryRead", "VadMemoryUpdate"]
    # the unknown vadedge op keeps its node and its function
    assert by_name["future"].op_type == "Future"
    assert {(f.domain, f.name) for f in out.functions} == {("vadedge", "Future")}
    assert any(o.domain == "vadedge" for o in out.opset_import)


def test_gate_is_cast_to_int32_in_front_of_the_update_plugin():
    out = replace_with_plugins(_model())
    names = [n.name for n in out.graph.node]
    update = next(n for n in out.graph.node if n.op_type == "VadMemoryUpdate")
    cast = next(n for n in out.graph.node if n.op_type == "Cast")
    assert list(cast.input) == ["gate"] and _attrs(cast)["to"] == TensorProto.INT32
    assert update.input[2] == cast.output[0] and list(update.input[:2]) == ["query", "memory_in"]
    assert names.index(cast.name) < names.index(update.name)  # still topologically sorted


def test_result_is_valid_onnx_and_input_untouched():
    model = _model()
    before = model.SerializeToString()
    out = replace_with_plugins(model)
    assert model.SerializeToString() == before
    onnx.checker.check_model(out)
    assert [o.name for o in out.graph.output] == ["read", "memory_out", "extra"]


def test_original_graph_runs_in_onnxruntime_but_plugins_are_trt_only():
    ort = pytest.importorskip("onnxruntime")
    model = _model()
    feeds = {"x": np.ones((2, 4, 8), np.float32), "memory_in": np.zeros((2, 3, 8), np.float32)}
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    fail = ort.capi.onnxruntime_pybind11_state.Fail
    with pytest.raises(fail, match="VadMemoryRead"):  # no CPU kernel for the plugin ops: they are for TensorRT
        ort.InferenceSession(replace_with_plugins(model).SerializeToString(), providers=["CPUExecutionProvider"])


def test_no_vadedge_nodes_warns_and_second_pass_is_a_no_op():
    out = replace_with_plugins(_model())
    with pytest.warns(UserWarning, match="nothing was replaced"):
        again = replace_with_plugins(out)
    assert again.SerializeToString() == out.SerializeToString()
    plain = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "p",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        replace_with_plugins(plain)
    assert caught


def test_pass_on_the_exporters_function_model():
    functions = pytest.importorskip("vadedge.export.functions")
    f32 = TensorProto.FLOAT
    model = functions.function_model(
        "MemoryUpdate",
        [("query", f32, [1, 4, 8]), ("memory", f32, [1, 3, 8]), ("gate", TensorProto.BOOL, [1])],
        [("new_memory", f32, [1, 3, 8])],
    )
    out = replace_with_plugins(model)
    assert [n.op_type for n in out.graph.node] == ["Cast", "VadMemoryUpdate"]
    assert len(out.functions) == 0
    onnx.checker.check_model(out)


def test_prototype_formation_becomes_a_plugin_without_casts():
    functions = pytest.importorskip("vadedge.export.functions")
    f32 = TensorProto.FLOAT
    model = functions.function_model(
        "PrototypeFormation", [("query", f32, [2, 16, 8]), ("weight", f32, [4, 8])], [("prototypes", f32, [2, 4, 8])]
    )
    out = replace_with_plugins(model)
    (node,) = out.graph.node
    assert (node.op_type, node.domain) == ("VadPrototypeFormation", "vadedge")
    assert list(node.input) == ["query", "weight"] and list(node.output) == ["prototypes"]
    attrs = _attrs(node)
    assert (attrs["plugin_namespace"], attrs["plugin_version"]) == (PLUGIN_NAMESPACE.encode(), PLUGIN_VERSION.encode())
    assert len(out.functions) == 0
    onnx.checker.check_model(out)
