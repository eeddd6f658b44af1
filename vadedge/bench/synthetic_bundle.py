"""A synthetic bundle for measuring the runtime without a trained model (`vadedge bench` with no model).

The graph (built with onnx.helper, so no torch is needed) has the full I/O contract of an exported
bundle — uint8 frames [B, N, H, W, C], a carried `memory` state (`memory_in` / `memory_out`), one
[B] output per score component (`psnr`, `feature_distance`) and an `error_map` — and does a
small amount of real work per clip: the error map is the squared difference between the last
frame and the mean of the context frames, `psnr` its PSNR, and the memory an EMA of the frame
error that feeds `feature_distance`. Per-stream state and its isolation are therefore observable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .._optional import require
from .._version import __version__
from ..bundle import GraphSpec, InputSection, Manifest, ScoreSpec, Stats, TensorSpec, ThresholdSpec, save_bundle

Batch = Union[int, str]
FAMILY = "synthetic"


@dataclass
class GraphParts:
    """The synthetic stream-step graph before `onnx.helper.make_graph`, so variants can extend it.

    `feature_distance` is produced from `fd` by the last node (an Identity).
    """

    nodes: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    fd: str = "fd0"


def graph_parts(batch: Batch, n: int, h: int, w: int, c: int, m: int, d: int) -> GraphParts:
    """Nodes, inputs, outputs and initialisers of the synthetic graph (clip length n, memory m x d)."""
    onnx = require("onnx")
    helper, TP = onnx.helper, onnx.TensorProto
    b = batch if isinstance(batch, int) else "batch"
    const = lambda name, v: helper.make_tensor(name, TP.FLOAT, [], [float(v)])  # noqa: E731
    ints = lambda name, v: helper.make_tensor(name, TP.INT64, [len(v)], list(v))  # noqa: E731
    inits = [
        const("k255", 255.0),
        const("eps", 1e-10),
        const("k_psnr", -10.0 / math.log(10.0)),
        const("k_mem", 0.1),
        const("k_keep", 0.9),
        ints("s_last", [n - 1]),
        ints("e_last", [n]),
        ints("s_ctx", [0]),
        ints("e_ctx", [n - 1]),
        ints("ax1", [1]),
        ints("ax12", [1, 2]),
    ]
    nodes = [
        helper.make_node("Cast", ["frames"], ["xf"], to=TP.FLOAT),
        helper.make_node("Div", ["xf", "k255"], ["x"]),
        helper.make_node("Slice", ["x", "s_last", "e_last", "ax1"], ["last"]),
        helper.make_node("Slice", ["x", "s_ctx", "e_ctx", "ax1"], ["ctx"]),
        helper.make_node("ReduceMean", ["ctx"], ["prev"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["last", "prev"], ["diff"]),
        helper.make_node("Mul", ["diff", "diff"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["error_map"], axes=[1, 4], keepdims=0),
        helper.make_node("ReduceMean", ["error_map"], ["mse"], axes=[1, 2], keepdims=0),
        helper.make_node("Add", ["mse", "eps"], ["mse_eps"]),
        helper.make_node("Log", ["mse_eps"], ["log_mse"]),
        helper.make_node("Mul", ["log_mse", "k_psnr"], ["psnr"]),
        helper.make_node("ReduceMean", ["memory_in"], ["mem_mean"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["mem_mean", "k_mem"], ["mem_term"]),
        helper.make_node("Add", ["mse", "mem_term"], ["fd0"]),
        helper.make_node("Unsqueeze", ["mse", "ax12"], ["mse_b"]),
        helper.make_node("Mul", ["memory_in", "k_keep"], ["mem_keep"]),
        helper.make_node("Mul", ["mse_b", "k_mem"], ["mem_add"]),
        helper.make_node("Add", ["mem_keep", "mem_add"], ["memory_out"]),
    ]
    inputs = [
        helper.make_tensor_value_info("frames", TP.UINT8, [b, n, h, w, c]),
        helper.make_tensor_value_info("memory_in", TP.FLOAT, [b, m, d]),
    ]
    outputs = [
        helper.make_tensor_value_info("psnr", TP.FLOAT, [b]),
        helper.make_tensor_value_info("feature_distance", TP.FLOAT, [b]),
        helper.make_tensor_value_info("memory_out", TP.FLOAT, [b, m, d]),
        helper.make_tensor_value_info("error_map", TP.FLOAT, [b, h, w]),
    ]
    return GraphParts(nodes, inputs, outputs, inits)


def build_model(parts: GraphParts, producer: str = "vadedge.bench.synthetic_bundle") -> Any:
    """The checked ONNX model of `parts` (feature_distance = Identity of `parts.fd`)."""
    onnx = require("onnx")
    helper = onnx.helper
    nodes = parts.nodes + [helper.make_node("Identity", [parts.fd], ["feature_distance"])]
    graph = helper.make_graph(nodes, "vadedge_synthetic", parts.inputs, parts.outputs, parts.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name=producer)
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def synthetic_manifest(
    *,
    batch: Batch,
    height: int,
    width: int,
    color: str,
    frames: int,
    memory: tuple[int, int],
    calibration: Optional[dict] = None,
    threshold: Optional[tuple[float, float]] = None,
    smoothing: float = 1.0,
    min_event_frames: int = 1,
    params: tuple[TensorSpec, ...] = (),
    side_inputs: tuple = (),
    family: str = FAMILY,
    created_by: str = "vadedge.bench.synthetic_bundle",
) -> Manifest:
    """The vadedge.json of a synthetic bundle (calibration: {component: {"location", "scale"}})."""
    m, d = memory
    return Manifest(
        family=family,
        preset=None,
        input=InputSection(height, width, color, frames, frames + 1),
        graph=GraphSpec(
            batch=batch,
            frames_input="frames",
            state=(TensorSpec("memory", "memory_in", "memory_out", (m, d)),),
            params=params,
            scores={"psnr": "psnr", "feature_distance": "feature_distance"},
            extra_outputs={"error_map": "error_map"},
            side_inputs=side_inputs,
        ),
        models={"fp32": "model.onnx"},
        score=ScoreSpec(
            signs={"psnr": -1, "feature_distance": 1},
            weights={"psnr": 0.6, "feature_distance": 0.4},
            calibration=None
            if calibration is None
            else {k: Stats(float(v["location"]), float(v["scale"])) for k, v in calibration.items()},
            smoothing=float(smoothing),
            threshold=None if threshold is None else ThresholdSpec(float(threshold[0]), float(threshold[1])),
            min_event_frames=int(min_event_frames),
        ),
        provenance={"vadedge_version": __version__, "opset": 17, "created_by": created_by},
    )


def write_synthetic_bundle(
    path: Union[str, Path],
    *,
    batch: Batch = "dynamic",
    height: int = 128,
    width: int = 128,
    color: str = "gray",
    frames: int = 4,
    memory: tuple[int, int] = (4, 8),
    seed: int = 0,
) -> Path:
    """Write a synthetic bundle to `path` (needs `onnx`); returns the folder."""
    onnx = require("onnx")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = 1 if color == "gray" else 3
    m, d = memory
    onnx.save(build_model(graph_parts(batch, frames + 1, height, width, c, m, d)), str(path / "model.onnx"))
    state = {"memory": np.random.default_rng(seed).random((m, d)).astype(np.float32)}
    manifest = synthetic_manifest(batch=batch, height=height, width=width, color=color, frames=frames, memory=memory)
    return save_bundle(path, manifest, state)
