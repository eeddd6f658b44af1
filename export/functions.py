"""The `vadedge`-domain ONNX operators as model-local functions made of standard ops (docs/design.md §3).

Every runtime that reads ONNX functions (ONNX Runtime, TensorRT's parser, the onnx checker) runs these
nodes as their bodies; the TensorRT path may swap them for plugin nodes (`vadedge.export.plugins`).
The bodies are type-polymorphic (constants go through `CastLike`), so the same function serves an
FP32 or an FP16 call site. Semantics (the export contract):

* `MemoryRead(features[B,K,D], memory[B,M,D]) -> (query[B,K,D], read[B,K,D])`:
  query = features / max(‖features‖₂ over D, 1e-12); w = softmax over M of query·memoryᵀ; read = w·memory
  (`l2_normalize` + `memory_read` of `vadedge.train.memory`).
* `MemoryUpdate(query[B,K,D], memory[B,M,D], gate[B] bool) -> new_memory[B,M,D]`: `memory_update` of
  `vadedge.train.memory` — nearest-item one-hot (ArgMax → OneHot), softmax over K per stream, divided by
  its max over K (clamped at 1e-12), Δ = vᵀ·query, L2-renormalised memory + Δ, `Where(gate, new, memory)`.
* `PrototypeFormation(query[B,N,D], weight[M,D]) -> prototypes[B,M,D]`: MPN's prototype formation
  (`prototype_formation` of `vadedge.train.models.mpn_dpu`) — a = softmax over the N positions of
  query·weightᵀ, prototypes = L2-normalise(aᵀ·query) with the same 1e-12 clamp. `weight` is an input
  (MPN feeds its adapted θ as graph inputs), shared by the B streams of the call.
"""

from __future__ import annotations

from collections.abc import Iterable

from vadedge._optional import require

DOMAIN = "vadedge"
DOMAIN_VERSION = 1
EPS = 1e-12
MIN_OPSET = 18  # Reduce* take `axes` as an input from opset 18; the torch exporter emits >= 18


def _helper():
    return require("onnx").helper


def _const_float(name: str, value: float):
    onnx = require("onnx")
    tensor = onnx.helper.make_tensor(name, onnx.TensorProto.FLOAT, [], [value])
    return onnx.helper.make_node("Constant", [], [name], value=tensor)


def _const_ints(name: str, values: list[int]):
    onnx = require("onnx")
    tensor = onnx.helper.make_tensor(name, onnx.TensorProto.INT64, [len(values)], values)
    return onnx.helper.make_node("Constant", [], [name], value=tensor)


def _l2_normalize(x: str, out: str, prefix: str) -> list:
    """Nodes computing out = x / max(ReduceL2(x, axis=-1), eps) (eps cast like x)."""
    h = _helper()
    return [
        _const_ints(f"{prefix}_axes", [-1]),
        h.make_node("ReduceL2", [x, f"{prefix}_axes"], [f"{prefix}_norm"], keepdims=1),
        _const_float(f"{prefix}_eps32", EPS),
        h.make_node("CastLike", [f"{prefix}_eps32", f"{prefix}_norm"], [f"{prefix}_eps"]),
        h.make_node("Max", [f"{prefix}_norm", f"{prefix}_eps"], [f"{prefix}_den"]),
        h.make_node("Div", [x, f"{prefix}_den"], [out]),
    ]


def memory_read_function(opset: int = MIN_OPSET):
    """FunctionProto of vadedge::MemoryRead (see the module docstring)."""
    h = _helper()
    nodes = _l2_normalize("features", "query", "q")
    nodes += [
        h.make_node("Transpose", ["memory"], ["memory_t"], perm=[0, 2, 1]),
        h.make_node("MatMul", ["query", "memory_t"], ["scores"]),
        h.make_node("Softmax", ["scores"], ["weights"], axis=-1),
        h.make_node("MatMul", ["weights", "memory"], ["read"]),
    ]
    return h.make_function(
        DOMAIN,
        "MemoryRead",
        ["features", "memory"],
        ["query", "read"],
        nodes,
        [h.make_opsetid("", opset)],
        doc_string="query = l2norm(features); read = softmax_M(query·memoryᵀ)·memory",
    )


def memory_update_function(opset: int = MIN_OPSET):
    """FunctionProto of vadedge::MemoryUpdate (see the module docstring)."""
    onnx = require("onnx")
    h = onnx.helper
    nodes = [
        h.make_node("Transpose", ["memory"], ["memory_t"], perm=[0, 2, 1]),
        h.make_node("MatMul", ["query", "memory_t"], ["scores"]),  # B,K,M
        h.make_node("ArgMax", ["scores"], ["nearest"], axis=-1, keepdims=0),  # B,K (first max)
        h.make_node("Shape", ["memory"], ["items"], start=1, end=2),  # [M]
        _const_float("off32", 0.0),
        _const_float("on32", 1.0),
        h.make_node("CastLike", ["off32", "scores"], ["off"]),
        h.make_node("CastLike", ["on32", "scores"], ["on"]),
        _const_ints("unsq_axes", [0]),
        h.make_node("Unsqueeze", ["off", "unsq_axes"], ["off1"]),
        h.make_node("Unsqueeze", ["on", "unsq_axes"], ["on1"]),
        h.make_node("Concat", ["off1", "on1"], ["onehot_values"], axis=0),
        h.make_node("OneHot", ["nearest", "items", "onehot_values"], ["assign"], axis=-1),  # B,K,M
        h.make_node("Softmax", ["scores"], ["query_weights"], axis=1),  # over K, per stream
        h.make_node("Mul", ["query_weights", "assign"], ["v"]),
        _const_ints("k_axis", [1]),
        h.make_node("ReduceMax", ["v", "k_axis"], ["v_max"], keepdims=1),  # B,1,M
        _const_float("eps32", EPS),
        h.make_node("CastLike", ["eps32", "v_max"], ["eps"]),
        h.make_node("Max", ["v_max", "eps"], ["v_den"]),
        h.make_node("Div", ["v", "v_den"], ["v_scaled"]),
        h.make_node("Transpose", ["v_scaled"], ["v_t"], perm=[0, 2, 1]),  # B,M,K
        h.make_node("MatMul", ["v_t", "query"], ["delta"]),  # B,M,D
        h.make_node("Add", ["memory", "delta"], ["moved"]),
    ]
    nodes += _l2_normalize("moved", "updated", "u")
    nodes += [
        _const_ints("gate_shape", [-1, 1, 1]),
        h.make_node("Reshape", ["gate", "gate_shape"], ["gate3"]),
        h.make_node("Where", ["gate3", "updated", "memory"], ["new_memory"]),
    ]
    return h.make_function(
        DOMAIN,
        "MemoryUpdate",
        ["query", "memory", "gate"],
        ["new_memory"],
        nodes,
        [h.make_opsetid("", opset)],
        doc_string="gated MNAD memory write: Where(gate, l2norm(memory + Δ), memory)",
    )


def prototype_formation_function(opset: int = MIN_OPSET):
    """FunctionProto of vadedge::PrototypeFormation (see the module docstring)."""
    h = _helper()
    nodes = [
        h.make_node("Transpose", ["weight"], ["weight_t"], perm=[1, 0]),  # D,M
        h.make_node("MatMul", ["query", "weight_t"], ["scores"]),  # B,N,M
        h.make_node("Softmax", ["scores"], ["attention"], axis=1),  # over the N positions
        h.make_node("Transpose", ["attention"], ["attention_t"], perm=[0, 2, 1]),  # B,M,N
        h.make_node("MatMul", ["attention_t", "query"], ["pooled"]),  # B,M,D
    ]
    nodes += _l2_normalize("pooled", "prototypes", "p")
    return h.make_function(
        DOMAIN,
        "PrototypeFormation",
        ["query", "weight"],
        ["prototypes"],
        nodes,
        [h.make_opsetid("", opset)],
        doc_string="prototypes = l2norm(softmax_N(query·weightᵀ)ᵀ·query)",
    )


FUNCTION_BUILDERS = {
    "MemoryRead": memory_read_function,
    "MemoryUpdate": memory_update_function,
    "PrototypeFormation": prototype_formation_function,
}


def used_ops(model) -> set[str]:
    """Op types of the `vadedge`-domain nodes in the main graph."""
    return {n.op_type for n in model.graph.node if n.domain == DOMAIN}


def attach_functions(model, opset: int | None = None) -> None:
    """Add the FunctionProto of every `vadedge` op the graph uses (once) and the domain's opset import."""
    onnx = require("onnx")
    if opset is None:
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), MIN_OPSET)
    if opset < MIN_OPSET:
        raise ValueError(f"vadedge functions need ONNX opset >= {MIN_OPSET}, the model has {opset}")
    have = {(f.domain, f.name) for f in model.functions}
    for op in sorted(used_ops(model)):
        if op not in FUNCTION_BUILDERS:
            raise ValueError(f"no function body for vadedge::{op}")
        if (DOMAIN, op) not in have:
            model.functions.append(FUNCTION_BUILDERS[op](opset))
    if used_ops(model) and not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DOMAIN_VERSION))


def function_model(
    op: str, inputs: Iterable[tuple[str, int, list]], outputs: Iterable[tuple[str, int, list]], opset: int = MIN_OPSET
):
    """A one-node model calling vadedge::`op` (tests, kernel checks); I/O given as (name, elem_type, shape)."""
    onnx = require("onnx")
    h = onnx.helper
    ins = [h.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    outs = [h.make_tensor_value_info(n, t, s) for n, t, s in outputs]
    node = h.make_node(op, [i.name for i in ins], [o.name for o in outs], domain=DOMAIN)
    graph = h.make_graph([node], f"vadedge_{op}", ins, outs)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=9)
    attach_functions(model, opset)
    return model
