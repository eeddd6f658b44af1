"""FP16 graph pass: compute in float16 with float32 / uint8 graph I/O, chosen regions kept in float32.

Regions are found from the graph itself, so the pass works for any family:

* heavy nodes: Conv, ConvTranspose, Gemm, and MatMul with a constant operand (the network's weights);
* `backbone`: heavy nodes and every node on a path between two of them (encoder, memory read, decoder);
* `prep`: the cheap arithmetic before the first heavy node (uint8 → [-1, 1] scaling);
* `tail`: the cheap arithmetic after the last heavy node (PSNR, feature distance, error map).

The backbone is converted to FP16 except the node kinds named in `keep` ("memory" = the `vadedge`
nodes: memory read / update and MPN's prototype formation; "softmax"; "norm" = ReduceL2 /
LpNormalization); `prep` and `tail` stay FP32 when named in `keep`. Pure data-movement ops (Reshape,
Transpose, Concat, Relu, MaxPool, ...) follow the precision their input already has, so no value is
rounded twice. Casts are inserted once per tensor and precision; float initializers are converted
(not cast at run time). The default keeps memory addressing, the prep scaling and the score tail in
FP32: measured in docs/export.md, they cost nothing in speed (a few KB of tensors) and keep PSNR
exact to the FP16 backbone's own error.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from vadedge._optional import require
from vadedge.errors import ConfigError

from .functions import DOMAIN

KEEP_CHOICES = ("memory", "softmax", "norm", "prep", "tail")
DEFAULT_KEEP = ("memory", "prep", "tail")
HEAVY_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
NEUTRAL_OPS = {
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Identity",
    "Slice",
    "Gather",
    "Split",
    "Concat",
    "Expand",
    "Tile",
    "Relu",
    "MaxPool",
    "Pad",
    "DepthToSpace",
    "SpaceToDepth",
    "Shape",
    "Size",
}
# ops whose float inputs may all be converted to the node's precision (type-polymorphic over float16)
POLYMORPHIC_OPS = (
    NEUTRAL_OPS
    | HEAVY_OPS
    | {
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Pow",
        "Sqrt",
        "Exp",
        "Log",
        "Neg",
        "Abs",
        "Reciprocal",
        "Tanh",
        "Sigmoid",
        "Softmax",
        "LogSoftmax",
        "Clip",
        "Max",
        "Min",
        "Where",
        "Less",
        "Greater",
        "LessOrEqual",
        "GreaterOrEqual",
        "Equal",
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ReduceMin",
        "ReduceL2",
        "ReduceSumSquare",
        "ArgMax",
        "ArgMin",
        "AveragePool",
        "GlobalAveragePool",
        "LeakyRelu",
        "Erf",
        "Cast",
        "CastLike",
        "ConstantOfShape",
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "LpNormalization",
        "Resize",
        "Sign",
        "Floor",
        "Ceil",
        "Round",
        "HardSigmoid",
        "Elu",
        "Selu",
        "Softplus",
        "Einsum",
        "OneHot",
        "TopK",
    }
)
# (op, input index) that must stay float32 whatever the node's precision
FLOAT32_INPUTS = {("Resize", 2), ("Resize", 1), ("Upsample", 1)}

FLOAT = 1
FLOAT16 = 10


def _parse_keep(keep: Iterable[str]) -> set[str]:
    keep = {k.strip() for k in keep if k and k.strip()}
    bad = keep - set(KEEP_CHOICES)
    if bad:
        raise ConfigError(f"unknown FP16 keep option(s) {sorted(bad)}; choose from {KEEP_CHOICES}")
    return keep


def _const_inputs(graph) -> set[str]:
    names = {i.name for i in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


def regions(graph) -> dict[str, set[int]]:
    """Node indices of the `heavy`, `backbone`, `prep` and `tail` regions (see the module docstring)."""
    consts = _const_inputs(graph)
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(graph.node):
        for x in n.input:
            if x:
                consumers[x].append(i)
    heavy = {
        i
        for i, n in enumerate(graph.node)
        if n.domain == "" and n.op_type in HEAVY_OPS and (n.op_type != "MatMul" or any(x in consts for x in n.input))
    }

    def closure(start: set[int], step) -> set[int]:
        seen, todo = set(), list(start)
        while todo:
            i = todo.pop()
            for j in step(i):
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return seen

    ancestors = closure(heavy, lambda i: [producer[x] for x in graph.node[i].input if x in producer])
    descendants = closure(heavy, lambda i: [j for o in graph.node[i].output for j in consumers.get(o, [])])
    backbone = heavy | (ancestors & descendants)
    prep = ancestors - descendants - heavy
    tail = set(range(len(graph.node))) - backbone - prep
    return {"heavy": heavy, "backbone": backbone, "prep": prep, "tail": tail}


def _is_memory(node) -> bool:
    return node.domain == DOMAIN


def convert_to_fp16(model, keep: Iterable[str] = DEFAULT_KEEP):
    """Return an FP16 copy of an FP32 model (graph I/O types unchanged); see the module docstring.

    Steps: infer shapes -> read tensor types -> float Constant nodes become initializers -> choose each
    node's precision and rewire its inputs through casts (`_Converter`) -> cast FP16 graph outputs back
    -> replace nodes and unused initializers -> infer shapes again and check.
    """
    onnx = require("onnx")
    keep = _parse_keep(keep)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    g = model.graph
    types = _tensor_types(g)
    _constants_to_initializers(g, types)
    conv = _Converter(g, types, keep)
    for i, node in enumerate(g.node):
        conv.convert_node(i, node)
    conv.restore_outputs()
    _replace_nodes(g, conv.new_nodes, conv.new_inits)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _tensor_types(g) -> dict[str, int]:
    """Element type of every graph input, output, value_info and initializer; the model must be FP32."""
    types: dict[str, int] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    if any(t == FLOAT16 for t in types.values()):
        raise ConfigError("the model already contains float16 tensors; convert an FP32 export")
    return types


def _constants_to_initializers(g, types: dict[str, int]) -> None:
    """Constant nodes with float tensors become initializers, so they convert like weights."""
    onnx = require("onnx")
    nodes = []
    for n in g.node:
        if (
            n.op_type == "Constant"
            and n.domain == ""
            and len(n.attribute) == 1
            and n.attribute[0].name == "value"
            and n.attribute[0].t.data_type == FLOAT
        ):
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
            types[t.name] = FLOAT
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)


def _replace_nodes(g, nodes: list, new_inits: list) -> None:
    """Install the rewritten node list; keep only initializers still used; drop stale value_info."""
    used = {x for n in nodes for x in n.input} | {o.name for o in g.output}
    kept_inits = [t for t in g.initializer if t.name in used] + [t for t in new_inits if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    del g.value_info[:]


class _Converter:
    """The node-by-node rewrite: which precision each node computes in, and for every float tensor the
    names of its FP32 / FP16 versions (`avail`), adding one Cast (or converted initializer) per tensor and
    precision on first use."""

    def __init__(self, g, types: dict[str, int], keep: set[str]) -> None:
        self.g, self.types, self.keep = g, types, keep
        self.reg = regions(g)
        self.inits = {i.name: i for i in g.initializer}
        self.graph_outputs = {o.name for o in g.output if o.type.tensor_type.elem_type == FLOAT}
        self.avail: dict[str, dict[int, str]] = {}
        for vi in g.input:
            if types.get(vi.name) == FLOAT:
                self.avail[vi.name] = {FLOAT: vi.name}
        for name in self.inits:
            if types.get(name) == FLOAT:
                self.avail[name] = {FLOAT: name}
        self.new_nodes: list = []
        self.new_inits: list = []
        self._casts = 0

    def get(self, name: str, dtype: int) -> str:
        """The name of tensor `name` in `dtype`, made on first use (converted initializer or Cast node)."""
        from onnx import helper, numpy_helper

        have = self.avail[name]
        if dtype in have:
            return have[dtype]
        src_type = FLOAT if FLOAT in have else FLOAT16
        suffix = "fp16" if dtype == FLOAT16 else "fp32"
        # the FP32 copy of an FP32 graph output *is* that output (its producer was renamed)
        out = name if (dtype == FLOAT and name in self.graph_outputs) else f"{name}__{suffix}"
        if name in self.inits and src_type == FLOAT:
            arr = numpy_helper.to_array(self.inits[name]).astype(np.float16 if dtype == FLOAT16 else np.float32)
            self.new_inits.append(numpy_helper.from_array(arr, out))
        else:
            self._casts += 1
            self.new_nodes.append(
                helper.make_node("Cast", [have[src_type]], [out], to=dtype, name=f"fp16_cast_{self._casts}")
            )
        have[dtype] = out
        return out

    def wanted(self, i: int, node) -> int:
        """The precision node `i` should compute in, from its kind, its region and `keep`."""
        keep = self.keep
        if _is_memory(node):
            return FLOAT if "memory" in keep else FLOAT16
        if node.domain not in ("", "ai.onnx") or node.op_type not in POLYMORPHIC_OPS:
            return FLOAT  # unknown op: leave it in FP32
        if node.op_type in ("Softmax", "LogSoftmax") and "softmax" in keep:
            return FLOAT
        if node.op_type in ("ReduceL2", "LpNormalization") and "norm" in keep:
            return FLOAT
        if i in self.reg["backbone"]:
            return FLOAT16
        if i in self.reg["prep"]:
            return FLOAT if "prep" in keep else FLOAT16
        return FLOAT if "tail" in keep else FLOAT16

    def convert_node(self, i: int, node) -> None:
        """Rewire node `i`'s float inputs to its precision, retype its attributes and record its outputs."""
        from onnx import numpy_helper

        types, avail = self.types, self.avail
        p = self.wanted(i, node)
        float_inputs = [x for x in node.input if x and types.get(x) == FLOAT]
        if node.op_type in NEUTRAL_OPS and node.domain == "" and float_inputs:
            first = avail[float_inputs[0]]
            if p not in first:
                p = next(iter(first))  # data movement follows its input's precision: no double rounding
        for k, x in enumerate(node.input):
            if x and types.get(x) == FLOAT:
                node.input[k] = self.get(x, FLOAT if (node.op_type, k) in FLOAT32_INPUTS else p)
        if p == FLOAT16:
            for a in node.attribute:
                if node.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
                    a.i = FLOAT16
                if node.op_type == "ConstantOfShape" and a.name == "value" and a.t.data_type == FLOAT:
                    arr = numpy_helper.to_array(a.t).astype(np.float16)
                    a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
        for k, o in enumerate(node.output):
            if not o or types.get(o) != FLOAT:
                continue
            out_type = p
            if node.op_type == "Cast":
                out_type = next(a.i for a in node.attribute if a.name == "to")
            if out_type == FLOAT16 and o in self.graph_outputs:
                node.output[k] = f"{o}__fp16"
                avail[o] = {FLOAT16: node.output[k]}
            else:
                avail[o] = {out_type: o}
        self.new_nodes.append(node)

    def restore_outputs(self) -> None:
        """Graph outputs computed in FP16 get a Cast back to their FP32 name (graph I/O types unchanged)."""
        for o in self.g.output:
            if o.name in self.graph_outputs and FLOAT not in self.avail.get(o.name, {FLOAT: o.name}):
                self.get(o.name, FLOAT)


def precision_summary(model) -> dict[str, int]:
    """How many nodes compute in each float type (by their first float output) — for reports and tests."""
    onnx = require("onnx")
    m = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(m.graph.value_info) + list(m.graph.output)}
    counts = {"float16": 0, "float32": 0}
    for n in m.graph.node:
        if n.op_type == "Cast":
            continue
        t = next((types[o] for o in n.output if types.get(o) in (FLOAT, FLOAT16)), None)
        if t == FLOAT16:
            counts["float16"] += 1
        elif t == FLOAT:
            counts["float32"] += 1
    return counts
