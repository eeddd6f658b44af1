"""torch → ONNX for one model family: the stream-step graph with state as I/O and `vadedge` memory nodes.

We use the dynamo exporter (`torch.onnx.export(dynamo=True)`), which emits opset >= 18. The memory
read / gated update (and MPN's prototype formation) are emitted as `vadedge::MemoryRead` /
`vadedge::MemoryUpdate` (`vadedge::PrototypeFormation`) nodes with
`torch.onnx.ops.symbolic*` during tracing (see `torch_graph.vadedge_memory_nodes`), and their
FunctionProtos are attached afterwards. Doing it this way (rather than folding a standard-op pattern
back into a call) keeps the node boundary exact and independent of how torch decomposes the ops;
attaching after export keeps the exporter's optimiser / version converter from inlining them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch

from vadedge._optional import require
from vadedge.bundle import GraphSpec, SideInputSpec, TensorSpec
from vadedge.errors import ConfigError
from vadedge.train.protocols import StreamModel

from .functions import MIN_OPSET, attach_functions
from .torch_graph import (
    StreamStepGraph,
    adaptable_params,
    example_inputs,
    param_input_name,
    prepare_model,
    side_input_specs,
    vadedge_memory_nodes,
)

DEFAULT_OPSET = 18
MAX_DYNAMIC_BATCH = 256


@dataclass
class GraphInfo:
    """The graph's I/O contract, as written into vadedge.json `graph`."""

    batch: Union[int, str]
    frames_input: str
    state: tuple[TensorSpec, ...]
    scores: dict[str, str]
    extra_outputs: dict[str, str] = field(default_factory=dict)
    params: tuple[TensorSpec, ...] = ()
    side_inputs: tuple[SideInputSpec, ...] = ()
    opset: int = DEFAULT_OPSET

    def graph_spec(self) -> GraphSpec:
        """The vadedge.json `graph` section of this graph."""
        return GraphSpec(
            batch=self.batch,
            frames_input=self.frames_input,
            state=self.state,
            params=self.params,
            scores=dict(self.scores),
            extra_outputs=dict(self.extra_outputs),
            side_inputs=self.side_inputs,
        )


def check_batch(batch: Union[int, str]) -> Union[int, str]:
    if batch == "dynamic":
        return batch
    try:
        b = int(batch)
    except (TypeError, ValueError):
        b = 0
    if b < 1 or str(batch).strip() != str(b):
        raise ConfigError(f"batch must be a positive integer or 'dynamic', got {batch!r}")
    return b


def export_onnx(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    path: Union[str, Path],
    *,
    batch: Union[int, str] = 1,
    error_map: bool = True,
    pred: bool = False,
    opset: int = DEFAULT_OPSET,
    params: Optional[bool] = None,
) -> GraphInfo:
    """Export `model.stream_step` as an ONNX graph at `path`; returns its I/O description.

    `state` is the unbatched per-stream initial state (the checkpoint's); it fixes the state inputs
    (`<name>_in`, [B, ...]) and outputs (`<name>_out`). Families with `side_inputs` (host-computed,
    e.g. optical flow) get one [B, ...] input each; families with `adaptable_parameters()` (MPN) get
    them as inputs `params.<name>` (shared by the call) unless `params=False`. The graph passes the
    full onnx checker.
    """
    onnx = require("onnx")
    assert isinstance(model, StreamModel), "export_onnx exports a model with the StreamModel protocol"
    batch = check_batch(batch)
    if opset < MIN_OPSET:
        raise ConfigError(
            f"opset must be >= {MIN_OPSET} (torch's ONNX exporter and the vadedge functions need it), got {opset}"
        )
    expected = set(model.initial_state())
    if set(state) != expected:
        raise ConfigError(f"state has {sorted(state)} but the model's stream state is {sorted(expected)}")
    for k, v in state.items():
        if v.dtype != torch.float32:
            raise ConfigError(f"state '{k}' must be float32, got {v.dtype}")
    state_names = sorted(state)
    score_names = list(model.score_components)
    side = side_input_specs(model)
    for k, spec in side.items():
        if spec.get("dtype", "float32") != "float32":
            raise ConfigError(f"side input '{k}' must be float32, got {spec.get('dtype')}")
    theta = adaptable_params(model) if params is not False else {}
    net = prepare_model(model, keep=theta)
    wrapper = StreamStepGraph(
        net, state_names, score_names, side_names=list(side), param_names=list(theta), error_map=error_map, pred=pred
    ).eval()
    args = example_inputs(
        net, {k: state[k] for k in state_names}, 2 if batch == "dynamic" else int(batch), side=list(side), params=theta
    )
    dynamic_shapes = None
    module: torch.nn.Module = wrapper
    if batch == "dynamic":
        dynamic_shapes = batch_dynamic_shapes(len(args) - 1, len(state_names) + len(side))
        if len(args) == 1:
            module = _FramesOnly(wrapper)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _quiet_exporter(), vadedge_memory_nodes(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            input_names=wrapper.input_names(),
            output_names=wrapper.output_names(),
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    assert program is not None  # dynamo=True always returns an ONNXProgram
    proto = program.model_proto
    attach_functions(proto, opset)
    proto.doc_string = f"vadedge stream step of {type(model).__name__}: uint8 frames + state in, scores + state out"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    shapes = {k: list(state[k].shape) for k in state_names}
    extra = {}
    if error_map:
        extra["error_map"] = "error_map"
    if pred:
        extra["pred"] = "pred"
    side_items = tuple(
        SideInputSpec(k, k, tuple(v["shape"]), provider=v.get("provider"), layout=v.get("layout"))
        for k, v in side.items()
    )
    param_items = tuple(TensorSpec(k, param_input_name(k), "", tuple(v.shape)) for k, v in theta.items())
    return GraphInfo(
        batch=batch,
        frames_input="frames",
        state=tuple(TensorSpec(k, f"{k}_in", f"{k}_out", tuple(shapes[k])) for k in state_names),
        scores={k: k for k in score_names},
        extra_outputs=extra,
        params=param_items,
        side_inputs=side_items,
        opset=opset,
    )


def batch_dynamic_shapes(n_inputs: int, n_batched: int) -> tuple:
    """`dynamic_shapes` for `StreamStepGraph.forward(frames, *inputs)` with a dynamic batch dimension.

    frames and the first `n_batched` inputs (state, side inputs) get dim 0 = "batch"; the rest (MPN's
    parameters) are static. Static inputs get an empty axes dict, never None: torch.onnx flattens
    dynamic_shapes treating any tuple whose items are all None/int/Dim as ONE input's axes, so a
    varargs tuple of Nones (a stateless family whose extra inputs are all parameters, e.g. MPN) was
    turned into a list and torch.export failed with "inputs[1] is a tuple but dynamic_shapes[1] is a
    list". With no inputs besides frames the exported module is `_FramesOnly` (same reason: an empty
    varargs tuple also reads as an axes list).
    """
    dim = torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)
    rest = tuple({0: dim} if i < n_batched else {} for i in range(n_inputs))
    return ({0: dim}, rest) if n_inputs else ({0: dim},)


class _FramesOnly(torch.nn.Module):
    """`forward(frames)` around a `StreamStepGraph` that takes nothing else (see `batch_dynamic_shapes`)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.inner(frames)


class _quiet_exporter:
    """Silence the exporter's progress prints and INFO/WARNING logs (errors still raise)."""

    def __enter__(self):
        self._loggers = [
            logging.getLogger(n)
            for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.onnx._internal.exporter")
        ]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc):
        for lg, level in zip(self._loggers, self._levels):
            lg.setLevel(level)
        return False
