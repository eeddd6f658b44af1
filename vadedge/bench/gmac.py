"""Multiply-accumulates per frame of an exported graph, counted from the shapes ONNX Runtime produces.

Convolutions, transposed convolutions, MatMul and Gemm nodes of the top-level graph are counted
(the `vadedge` memory functions are a few thousand MACs and are left out); the graph is run once
at batch 1 with the inputs of those nodes exposed as extra outputs, so dynamic shapes need no shape
inference. Q/DQ (INT8) graphs do the same work as the FP32 graph they came from: count that one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .._optional import require
from ..runtime.backends.onnxruntime import make_session

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def conv_macs(out_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """Conv: every output element is a dot product over (C_in / groups) × kernel taps."""
    return int(np.prod(out_shape, dtype=np.int64)) * int(np.prod(weight_shape[1:], dtype=np.int64))


def conv_transpose_macs(in_shape: tuple[int, ...], weight_shape: tuple[int, ...]) -> int:
    """ConvTranspose: every input element scatters into (C_out / groups) × kernel taps outputs."""
    return int(np.prod(in_shape, dtype=np.int64)) * int(np.prod(weight_shape[1:], dtype=np.int64))


def matmul_macs(a_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """MatMul / Gemm: each output element sums over the shared dimension (A's last)."""
    return int(np.prod(out_shape, dtype=np.int64)) * int(a_shape[-1])


def count_gmac(model_path: Union[str, Path], feeds: Mapping[str, np.ndarray]) -> float:
    """GMAC of one call of the graph at `model_path` on `feeds` (batch 1 = GMAC per frame)."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    model = onnx.load(str(model_path))
    graph = model.graph
    inits = {t.name: tuple(t.dims) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in COUNTED]
    if not nodes:
        return 0.0
    known = {o.name for o in graph.output}
    want: list[str] = []
    for n in nodes:
        for name in (n.input[0], n.output[0]) + ((n.input[1],) if len(n.input) > 1 else ()):
            if name and name not in inits and name not in known and name not in feeds and name not in want:
                want.append(name)
    for name in want:
        graph.output.append(onnx.ValueInfoProto(name=name))
    sess = make_session(model.SerializeToString(), optimize=False, ort=ort)  # unoptimised: every tensor named
    names = [o.name for o in sess.get_outputs()]
    shapes = {k: tuple(np.shape(v)) for k, v in zip(names, sess.run(names, dict(feeds)))}
    shapes.update({k: tuple(np.shape(v)) for k, v in feeds.items()})
    shapes.update(inits)
    total = 0
    for n in nodes:
        x, y = shapes.get(n.input[0]), shapes.get(n.output[0])
        w = shapes.get(n.input[1]) if len(n.input) > 1 else None
        if x is None or y is None or w is None:
            continue
        if n.op_type == "Conv":
            total += conv_macs(y, w)
        elif n.op_type == "ConvTranspose":
            total += conv_transpose_macs(x, w)
        else:
            total += matmul_macs(x, y)
    return total / 1e9


def bundle_gmac(bundle_dir: Union[str, Path]) -> Optional[float]:
    """GMAC per frame of a bundle's FP32 graph (batch 1, its initial state), or None when it cannot be counted.

    GMAC is informative (a bench row keeps its timings without it), so any failure gives None.
    """
    from ..bundle import load_bundle

    try:
        b = load_bundle(bundle_dir)
        spec = b.input_spec
        g = b.manifest.graph
        frames = np.zeros((1, b.clip_length, spec.height, spec.width, spec.channels), np.uint8)
        feeds: dict[str, np.ndarray] = {g.frames_input: frames}
        for item in g.state:
            feeds[item.input] = np.asarray(b.state[item.name], np.float32)[None]
        for item in g.params:
            feeds[item.input] = np.asarray(b.state[item.name], np.float32)
        for side in g.side_inputs:
            feeds[side.input] = np.zeros((1, *side.shape), np.float32)
        return round(count_gmac(b.model_file("fp32"), feeds), 6)
    except Exception:  # noqa: BLE001 - GMAC is informative; the row still has its timings
        return None
