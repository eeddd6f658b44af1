"""Graph pass: swap the `vadedge`-domain nodes for TensorRT plugin nodes (`--plugins`).

The exporter writes memory addressing as nodes in the `vadedge` domain backed by model-local
functions of standard ops, so every runtime can run them. TensorRT's ONNX parser can instead map a
node to an IPluginV3 plugin: a node whose op type has no built-in importer and no local function
goes to its fallback plugin importer, which looks up the creator by plugin name = op type, version
= string attribute `plugin_version` and namespace = string attribute `plugin_namespace` (TensorRT
>= 10.10 also reads the namespace from the node's domain), and passes the other attributes as
PluginFields. This pass therefore renames `MemoryRead` -> `VadMemoryRead`, `MemoryUpdate` ->
`VadMemoryUpdate` (`PrototypeFormation` -> `VadPrototypeFormation`), keeps the domain `vadedge`, adds
`plugin_namespace="vadedge"` and `plugin_version="1"`, and drops the local functions no node uses
any more (a remaining local function would make the parser inline it instead of using the plugin).

The MemoryUpdate gate (bool [B]) is cast to int32 in front of the plugin: TensorRT plugins are
safest with numeric I/O (its plugin API documents kBOOL/kUINT8 as unsupported plugin output
types); the plugin accepts BOOL or INT32 for the gate.
"""

from __future__ import annotations

import warnings
from typing import Any

from vadedge._optional import require

DOMAIN = "vadedge"
PLUGIN_NAMESPACE = "vadedge"
PLUGIN_VERSION = "1"
#: vadedge op type -> TensorRT plugin name (= op type of the plugin node).
PLUGIN_OPS: dict[str, str] = {
    "MemoryRead": "VadMemoryRead",
    "MemoryUpdate": "VadMemoryUpdate",
    "PrototypeFormation": "VadPrototypeFormation",
}
#: inputs that get a Cast to int32 in front of the plugin: op type -> input positions.
_INT32_INPUTS: dict[str, tuple[int, ...]] = {"MemoryUpdate": (2,)}


def _used_functions(model: Any) -> set[tuple[str, str]]:
    """(domain, name) of every op called from the graph or from a local function."""
    used = {(n.domain, n.op_type) for n in model.graph.node}
    for fn in model.functions:
        used |= {(n.domain, n.op_type) for n in fn.node}
    return used


def replace_with_plugins(model: Any) -> Any:
    """Return a copy of `model` (onnx.ModelProto) whose vadedge nodes are TensorRT plugin nodes.

    The result is for TensorRT (trtexec, `build_engine`, ONNX Runtime's TensorRT EP with
    `trt_extra_plugin_lib_paths`) with the vadedge plugin library loaded; ONNX Runtime on CPU cannot
    run it. Nodes of unknown vadedge ops are left alone (they keep their function bodies).
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    replaced = 0
    for node in out.graph.node:
        if node.domain != DOMAIN or node.op_type not in PLUGIN_OPS:
            nodes.append(node)
            continue
        inputs = list(node.input)
        for pos in _INT32_INPUTS.get(node.op_type, ()):
            if pos < len(inputs) and inputs[pos]:
                cast_out = f"{node.name or node.op_type}_{pos}_int32"
                nodes.append(
                    helper.make_node(
                        "Cast",
                        [inputs[pos]],
                        [cast_out],
                        to=TensorProto.INT32,
                        name=f"{node.name or node.op_type}_cast{pos}",
                    )
                )
                inputs[pos] = cast_out
        plugin = helper.make_node(PLUGIN_OPS[node.op_type], inputs, list(node.output), name=node.name, domain=DOMAIN)
        keep = [a for a in node.attribute if a.name not in ("plugin_namespace", "plugin_version")]
        plugin.attribute.extend(keep)
        plugin.attribute.extend(
            [
                helper.make_attribute("plugin_namespace", PLUGIN_NAMESPACE),
                helper.make_attribute("plugin_version", PLUGIN_VERSION),
            ]
        )
        nodes.append(plugin)
        replaced += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = _used_functions(out)
    keep_fns = [f for f in out.functions if (f.domain, f.name) in used]
    del out.functions[:]
    out.functions.extend(keep_fns)
    if not any(op.domain == DOMAIN for op in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    if replaced == 0:
        warnings.warn(
            "replace_with_plugins: the model has no vadedge MemoryRead/MemoryUpdate/"
            "PrototypeFormation nodes; nothing was replaced",
            stacklevel=2,
        )
    return out


def plugin_nodes(model: Any) -> list[Any]:
    """The plugin nodes of a model (op types in PLUGIN_OPS.values()), e.g. to check a pass result."""
    names = set(PLUGIN_OPS.values())
    return [n for n in model.graph.node if n.op_type in names]
