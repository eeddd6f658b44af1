"""Experiment (measured, not adopted — docs/benchmarks.md, change 5): stride-2 transposed convolutions →
one convolution + DepthToSpace (sub-pixel form).

ONNX Runtime's CPU provider runs ConvTranspose through im2col + GEMM + col2im, has no NCHWc or
int8 kernel for it (a Q/DQ graph dequantises around it and runs it in float), so in the MNAD
decoder its three upsampling layers cost 13 % of the FP32 time and 22 % of the INT8 time
(docs/benchmarks.md). A ConvTranspose with kernel 3, stride 2, pads 1, output_padding 1 (the
U-Net's `up` layers) is exactly a 2×2 convolution with 4·C_out outputs — one group per output
phase (row parity a, column parity b) — followed by DepthToSpace(2, CRD):

    per axis: out[2i] = x[i]·w[1],   out[2i+1] = x[i]·w[2] + x[i+1]·w[0]

so the 2×2 kernel of phase (a, b) holds the taps w[r(a, t), r(b, u)] with r(0,0)=1, r(1,0)=2,
r(1,1)=0 and zeros where a phase has no tap (r(0,1)). The result is identical up to float
summation order; the convolution then takes ONNX Runtime's fast (and quantisable) Conv path at
16/9 of the multiply-adds.
"""
from __future__ import annotations

import numpy as np

from .._optional import require

_TAP = {(0, 0): 1, (1, 0): 2, (1, 1): 0}  # (phase, tap offset) → kernel index of the 3-tap transposed kernel


def _attrs(node) -> dict:
    onnx = require("onnx")
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def is_subpixel_candidate(node, inits: dict) -> bool:
    """A 2-D ConvTranspose k3 s2 p1 op1, group 1, weight (and bias) as initializers."""
    if node.op_type != "ConvTranspose" or node.input[1] not in inits:
        return False
    a = _attrs(node)
    w = inits[node.input[1]]
    return (len(w.dims) == 4 and list(w.dims[2:]) == [3, 3] and a.get("group", 1) == 1
            and list(a.get("strides", [])) == [2, 2] and list(a.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and list(a.get("output_padding", [0, 0])) == [1, 1] and list(a.get("dilations", [1, 1])) == [1, 1]
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and (len(node.input) < 3 or not node.input[2] or node.input[2] in inits))


def subpixel_weights(w: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """ConvTranspose weight (C_in, C_out, 3, 3) [+ bias] → Conv weight (4·C_out, C_in, 2, 2) and bias (CRD order)."""
    cin, cout = w.shape[:2]
    k = np.zeros((cout, 2, 2, cin, 2, 2), dtype=w.dtype)  # (c, a, b, cin, t, u)
    for (pa, t), r in _TAP.items():
        for (pb, u), s in _TAP.items():
            k[:, pa, pb, :, t, u] = w[:, :, r, s].T
    bias = np.zeros(cout, w.dtype) if b is None else b
    return k.reshape(cout * 4, cin, 2, 2), np.repeat(bias, 4).astype(w.dtype)


def convtranspose_to_subpixel(model):
    """Return a copy of `model` with every candidate ConvTranspose replaced (see the module docstring)."""
    onnx = require("onnx")
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = []
    replaced = 0
    for node in g.node:
        if not is_subpixel_candidate(node, inits):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        b = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        kw, kb = subpixel_weights(w, b)
        base = node.name or f"convtranspose_{replaced}"
        wn, bn, mid = f"{base}_subpixel_w", f"{base}_subpixel_b", f"{base}_subpixel_phases"
        g.initializer.extend([numpy_helper.from_array(kw, wn), numpy_helper.from_array(kb, bn)])
        nodes.append(helper.make_node("Conv", [node.input[0], wn, bn], [mid], name=f"{base}_subpixel_conv",
                                      kernel_shape=[2, 2], pads=[0, 0, 1, 1], strides=[1, 1]))
        nodes.append(helper.make_node("DepthToSpace", [mid], list(node.output), name=f"{base}_subpixel_d2s",
                                      blocksize=2, mode="CRD"))
        replaced += 1
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return model
