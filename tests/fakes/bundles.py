"""Toy bundles for tests: the product's synthetic graph (`vadedge.bench.synthetic_bundle`) plus the
variants only tests need — an MPN-like adapted parameter (`params`), a MAAM-like host-computed
side input (`flow`), chosen calibration / threshold / smoothing. Needs only `onnx` to build and
nothing but onnxruntime to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from vadedge._optional import require
from vadedge.bench.synthetic_bundle import Batch, build_model, graph_parts, synthetic_manifest
from vadedge.bundle import SideInputSpec, TensorSpec, save_bundle


def _toy_model(batch: Batch, n: int, h: int, w: int, c: int, m: int, d: int, params: Optional[str], flow: bool = False):
    onnx = require("onnx")
    helper, TP = onnx.helper, onnx.TensorProto
    parts = graph_parts(batch, n, h, w, c, m, d)
    b = batch if isinstance(batch, int) else "batch"
    if flow:  # a host-computed side input (MAAM-Net style optical flow): its mean |v| adds to fd
        parts.inputs.append(helper.make_tensor_value_info("flow", TP.FLOAT, [b, n - 1, h, w, 2]))
        parts.nodes += [
            helper.make_node("Abs", ["flow"], ["flow_abs"]),
            helper.make_node("ReduceMean", ["flow_abs"], ["flow_mean"], axes=[1, 2, 3, 4], keepdims=0),
            helper.make_node("Add", [parts.fd, "flow_mean"], ["fd1"]),
        ]
        parts.fd = "fd1"
    if params is not None:  # an MPN-like adapted parameter: its mean shifts feature_distance
        batched = params == "batched"
        parts.inputs.append(helper.make_tensor_value_info("proto_in", TP.FLOAT, [b, 4] if batched else [4]))
        parts.nodes += [
            helper.make_node("ReduceMean", ["proto_in"], ["p_mean"], axes=[-1], keepdims=0),
            helper.make_node("Add", [parts.fd, "p_mean"], ["fd_p"]),
        ]
        parts.fd = "fd_p"
    return build_model(parts, producer="tests.fakes.bundles")


def make_toy_bundle(
    path: Union[str, Path],
    *,
    batch: Batch = 1,
    height: int = 32,
    width: int = 32,
    color: str = "gray",
    frames: int = 4,
    memory: tuple[int, int] = (4, 8),
    calibration: Optional[dict] = None,
    threshold: Optional[tuple[float, float]] = None,
    smoothing: float = 1.0,
    min_event_frames: int = 1,
    params: Optional[str] = None,
    flow: Optional[dict] = None,
    seed: int = 0,
) -> Path:
    """Write a toy bundle to `path` (batch: int or "dynamic"; params: None | "batched" | "shared";
    flow: a `vadedge.flow` provider config to add a host-computed `flow` side input)."""
    onnx = require("onnx")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = 1 if color == "gray" else 3
    n = frames + 1
    m, d = memory
    onnx.save(_toy_model(batch, n, height, width, c, m, d, params, flow is not None), str(path / "model.onnx"))
    rng = np.random.default_rng(seed)
    state = {"memory": rng.random((m, d)).astype(np.float32)}
    param_items: tuple[TensorSpec, ...] = ()
    if params is not None:
        state["proto"] = np.zeros(4, np.float32)
        param_items = (TensorSpec("proto", "proto_in", "proto_in", (4,)),)
    side = () if flow is None else (SideInputSpec("flow", "flow", (n - 1, height, width, 2), provider=dict(flow)),)
    manifest = synthetic_manifest(
        batch=batch,
        height=height,
        width=width,
        color=color,
        frames=frames,
        memory=memory,
        calibration=calibration,
        threshold=threshold,
        smoothing=smoothing,
        min_event_frames=min_event_frames,
        params=param_items,
        side_inputs=side,
        family="toy",
        created_by="tests.fakes.bundles",
    )
    return save_bundle(path, manifest, state)
