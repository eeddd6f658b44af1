"""A tiny hand-made bundle (ONNX built with onnx.helper) for tests, examples and docs.

The "toy" model scores motion: the error map is the squared difference between the last frame and
the mean of the context frames, `psnr` is its PSNR, and a per-stream `memory` state (an EMA of the
frame error) feeds `feature_distance`, so per-stream state and its isolation are observable. It has
the same I/O contract as an exported bundle (uint8 frames [B, N, H, W, C], `memory_in` /
`memory_out`, one [B] output per score component, `error_map`), needs only `onnx` to build and
nothing but onnxruntime to run.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Union

import numpy as np

from .._optional import require
from .._version import __version__
from ..bundle import save_bundle

Batch = Union[int, str]


def _toy_model(batch: Batch, n: int, h: int, w: int, c: int, m: int, d: int, params: Optional[str],
               flow: bool = False):
    onnx = require("onnx")
    helper, TP = onnx.helper, onnx.TensorProto
    b = batch if isinstance(batch, int) else "batch"
    const = lambda name, v: helper.make_tensor(name, TP.FLOAT, [], [float(v)])  # noqa: E731
    ints = lambda name, v: helper.make_tensor(name, TP.INT64, [len(v)], list(v))  # noqa: E731
    inits = [const("k255", 255.0), const("eps", 1e-10), const("k_psnr", -10.0 / math.log(10.0)),
             const("k_mem", 0.1), const("k_keep", 0.9), ints("s_last", [n - 1]), ints("e_last", [n]),
             ints("s_ctx", [0]), ints("e_ctx", [n - 1]), ints("ax1", [1]), ints("ax12", [1, 2])]
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
    inputs = [helper.make_tensor_value_info("frames", TP.UINT8, [b, n, h, w, c]),
              helper.make_tensor_value_info("memory_in", TP.FLOAT, [b, m, d])]
    if flow:  # a host-computed side input (MAAM-Net style optical flow): its mean |v| adds to fd
        inputs.append(helper.make_tensor_value_info("flow", TP.FLOAT, [b, n - 1, h, w, 2]))
        nodes += [helper.make_node("Abs", ["flow"], ["flow_abs"]),
                  helper.make_node("ReduceMean", ["flow_abs"], ["flow_mean"], axes=[1, 2, 3, 4], keepdims=0),
                  helper.make_node("Add", ["fd0", "flow_mean"], ["fd1"])]
        fd_in = "fd1"
    else:
        fd_in = "fd0"
    if params is None:
        nodes.append(helper.make_node("Identity", [fd_in], ["feature_distance"]))
    else:  # an MPN-like adapted parameter: its mean shifts feature_distance
        batched = params == "batched"
        inputs.append(helper.make_tensor_value_info("proto_in", TP.FLOAT, [b, 4] if batched else [4]))
        nodes.append(helper.make_node("ReduceMean", ["proto_in"], ["p_mean"], axes=[-1], keepdims=0))
        nodes.append(helper.make_node("Add", [fd_in, "p_mean"], ["feature_distance"]))
    outputs = [helper.make_tensor_value_info("psnr", TP.FLOAT, [b]),
               helper.make_tensor_value_info("feature_distance", TP.FLOAT, [b]),
               helper.make_tensor_value_info("memory_out", TP.FLOAT, [b, m, d]),
               helper.make_tensor_value_info("error_map", TP.FLOAT, [b, h, w])]
    graph = helper.make_graph(nodes, "vadedge_toy", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="vadedge.runtime.testing")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_toy_bundle(path: str | Path, *, batch: Batch = 1, height: int = 32, width: int = 32,
                    color: str = "gray", frames: int = 4, memory: tuple[int, int] = (4, 8),
                    calibration: Optional[dict] = None, threshold: Optional[tuple[float, float]] = None,
                    smoothing: float = 1.0, min_event_frames: int = 1, params: Optional[str] = None,
                    flow: Optional[dict] = None, seed: int = 0) -> Path:
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
    param_items = []
    if params is not None:
        state["proto"] = np.zeros(4, np.float32)
        param_items = [{"name": "proto", "input": "proto_in", "output": "proto_in", "shape": [4],
                        "dtype": "float32"}]
    manifest = {
        "schema_version": 1, "family": "toy", "preset": None,
        "input": {"height": height, "width": width, "color": color, "frames": frames, "clip_length": n},
        "graph": {
            "batch": batch, "frames_input": "frames",
            "state": [{"name": "memory", "input": "memory_in", "output": "memory_out", "shape": [m, d],
                       "dtype": "float32"}],
            "params": param_items,
            "scores": {"psnr": "psnr", "feature_distance": "feature_distance"},
            "extra_outputs": {"error_map": "error_map"},
        },
        "models": {"fp32": "model.onnx"},
        "state_file": "state.npz",
        "score": {
            "signs": {"psnr": -1, "feature_distance": 1},
            "weights": {"psnr": 0.6, "feature_distance": 0.4},
            "calibration": calibration,
            "smoothing": smoothing,
            "threshold": None if threshold is None else {"on": threshold[0], "off": threshold[1]},
            "min_event_frames": min_event_frames,
        },
        "provenance": {"vadedge_version": __version__, "opset": 17, "created_by": "vadedge.runtime.testing"},
    }
    if flow is not None:
        manifest["graph"]["side_inputs"] = [{"name": "flow", "input": "flow", "shape": [n - 1, height, width, 2],
                                             "dtype": "float32", "provider": dict(flow)}]
    return save_bundle(path, manifest, state)
