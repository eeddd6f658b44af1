"""INT8 explicit quantisation (Q/DQ) of an exported FP32 graph with `onnxruntime.quantization`.

The calibration reader streams normal footage through the FP32 graph, carrying each video's state
exactly as the runtime will, and hands `quantize_static` evenly spaced clips (frames + the state at
that moment). Output is QDQ (QuantizeLinear/DequantizeLinear pairs) — the form TensorRT 10/11 and
ONNX Runtime both consume. Only the convolutions are quantised; the `vadedge` memory nodes, softmax,
norms and the score tail stay in float (they are excluded by name and by op type, and the result is
checked), and so do the convolutions whose output the memory nodes address (the query features:
quantising them made MNAD's feature distance, ~1e-6 on normal frames, wrong by up to 15x — measured
in docs/export.md). Two profiles (`Int8Options.for_target`), measured in docs/export.md:

* "trt": what TensorRT needs — symmetric signed INT8 activations and weights (zero point 0),
  per-channel weights, Q/DQ only around convolutions (TensorRT fuses the rest itself);
* "cpu": what ONNX Runtime's CPU kernels run fastest — asymmetric uint8 activations (a ReLU folds
  into the quantiser's range), and MaxPool / Concat / ReLU quantised too so the whole encoder and
  decoder stay in int8 between convolutions. TensorRT rejects non-zero zero points, so build
  TensorRT engines from a "trt" export.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from vadedge._optional import require
from vadedge.bundle import GraphSpec
from vadedge.errors import ConfigError, DataError
from vadedge.preprocess import InputSpec

from .footage import iter_videos, open_normal_footage

CALIB_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_OP_TYPES = ("Conv", "ConvTranspose")
CPU_OP_TYPES = ("Conv", "ConvTranspose", "MaxPool", "Concat", "Relu", "Resize")
DEFAULT_MAX_CLIPS = 256
TARGETS = ("cpu", "trt")


@dataclass
class Int8Options:
    """Knobs of the quantiser (measured side by side in docs/export.md)."""

    per_channel: bool = True
    reduce_range: bool = False
    symmetric_activations: bool = True  # TensorRT wants zero-point 0
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    float_last_convs: int = 0  # keep the last N convolutions (the output head) in float
    float_first_conv: bool = False  # keep the first convolution (raw frames in) in float
    float_memory_inputs: bool = True  # keep the convolutions whose output the memory nodes address
    percentile: float = 99.999
    max_clips: int = DEFAULT_MAX_CLIPS
    # quant_pre_process with shape inference only: its ORT-optimisation step would inline the vadedge
    # functions, and BatchNorm is already folded by the exporter
    pre_process: bool = False
    target: str = "trt"

    @classmethod
    def for_target(cls, target: str, **overrides) -> Int8Options:
        """The "trt" (symmetric, Q/DQ around convolutions) or "cpu" (uint8, whole backbone) profile."""
        if target not in TARGETS:
            raise ConfigError(f"INT8 target must be one of {TARGETS}, got {target!r}")
        if target == "cpu":
            base = cls(symmetric_activations=False, op_types=CPU_OP_TYPES, target="cpu")
        else:
            base = cls(target="trt")
        for k, v in overrides.items():
            setattr(base, k, v)
        return base


class ClipFeeds:
    """`onnxruntime.quantization.CalibrationDataReader` over normal footage, state carried by the FP32 graph."""

    def __init__(
        self,
        fp32_model: Union[str, Path],
        graph: GraphSpec,
        spec: InputSpec,
        clip_length: int,
        state: dict[str, np.ndarray],
        data: Union[str, Path],
        *,
        max_clips: int = DEFAULT_MAX_CLIPS,
        threads: Optional[int] = None,
        progress: bool = False,
    ) -> None:
        from vadedge.runtime.runner import StreamRunner

        self.split = open_normal_footage(data)
        self.runner = StreamRunner.for_model(fp32_model, graph, clip_length, state, threads=threads)
        self.spec, self.clip_length = spec, clip_length
        self.batch = self.runner.batch or 1
        total = sum(max(0, v.num_frames - clip_length + 1) for v in self.split.videos)
        if total == 0:
            raise DataError(f"no video in {self.split.root} has the {clip_length} frames one clip needs")
        self.stride = max(1, math.ceil(total / max(1, max_clips)))
        self.total_clips = total
        self.progress = progress
        self.clips_used = 0
        self._it: Optional[Iterator[dict]] = None

    def _feeds(self) -> Iterator[dict]:
        pending: list[tuple[np.ndarray, dict]] = []  # (clip [1, N, H, W, C], state {name: [1, ...]})
        index = 0
        for _, frames in iter_videos(self.split, self.spec, self.clip_length):
            state = self.runner.batched_state(1)
            n = self.clip_length
            for t in range(n - 1, len(frames)):
                clip = frames[None, t - n + 1 : t + 1]
                if index % self.stride == 0:
                    pending.append((clip, state))
                    if len(pending) == self.batch:
                        yield self._stack(pending)
                        pending = []
                index += 1
                state = self._next_state(clip, state)  # carry the state as the runtime will
        if pending:  # pad the last batch by repeating its first clip
            pending += [pending[0]] * (self.batch - len(pending))
            yield self._stack(pending)

    def _next_state(self, clip: np.ndarray, state: dict) -> dict:
        """One stream's state after `clip` (a static batch B > 1 graph runs it in every slot)."""
        clips = np.ascontiguousarray(np.repeat(clip, self.batch, axis=0))
        tiled = {k: np.repeat(v, self.batch, axis=0) for k, v in state.items()}
        out = self.runner.step(clips, tiled, self.runner.call_params(self.batch))
        return {k: v[:1] for k, v in out.state.items()}

    def _stack(self, items: list[tuple[np.ndarray, dict]]) -> dict:
        """One batch of graph feeds: clips and per-stream state stacked, parameters as the graph takes them,
        side inputs computed."""
        self.clips_used += len(items)
        clips = np.ascontiguousarray(np.concatenate([c for c, _ in items]))
        state = {k: np.ascontiguousarray(np.concatenate([s[k] for _, s in items])) for k in self.runner.state_names}
        return self.runner.graph_feeds(clips, state, self.runner.call_params(len(items)))

    # CalibrationDataReader protocol
    def get_next(self) -> Optional[dict]:
        if self._it is None:
            self._it = self._feeds()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None
        self.clips_used = 0

    def __iter__(self):
        self.rewind()
        return self

    def __next__(self) -> dict:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


@dataclass
class Int8Report:
    method: str
    clips: int
    quantized_nodes: int
    float_nodes_kept: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)


def _name_nodes(model) -> None:
    seen = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            n.name = f"{n.op_type}_{i}"
        seen.add(n.name)


def quantize_int8(
    fp32_path: Union[str, Path],
    out_path: Union[str, Path],
    reader,
    *,
    method: str = "minmax",
    options: Optional[Int8Options] = None,
) -> Int8Report:
    """Write a QDQ INT8 copy of `fp32_path` to `out_path`, calibrated with `reader` (see the module docstring)."""
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    from vadedge.export.fp16 import regions
    from vadedge.export.functions import DOMAIN

    options = options or Int8Options()
    method = method.lower()
    if method not in CALIB_METHODS:
        raise ConfigError(f"calibration method must be one of {CALIB_METHODS}, got {method!r}")
    model = onnx.load(str(fp32_path))
    _name_nodes(model)
    reg = regions(model.graph)
    exclude = [
        n.name
        for i, n in enumerate(model.graph.node)
        if n.domain == DOMAIN or i not in reg["backbone"] or n.op_type in ("Softmax", "ReduceL2")
    ]
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    if options.float_last_convs:
        exclude += convs[-options.float_last_convs :]
    if options.float_first_conv:
        exclude += convs[:1]
    if options.float_memory_inputs:
        exclude += _convs_feeding(model.graph, lambda n: n.domain == DOMAIN)
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "named.onnx"
        onnx.save(model, str(src))
        if options.pre_process:
            pre = Path(tmp) / "pre.onnx"
            q.quant_pre_process(str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True)
            src = pre
        calib = {
            "minmax": q.CalibrationMethod.MinMax,
            "entropy": q.CalibrationMethod.Entropy,
            "percentile": q.CalibrationMethod.Percentile,
        }[method]
        extra: dict[str, Any] = {"ActivationSymmetric": options.symmetric_activations, "WeightSymmetric": True}
        if method == "percentile":
            extra["CalibPercentile"] = options.percentile
        act = q.QuantType.QInt8 if options.symmetric_activations else q.QuantType.QUInt8
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_static logs a pre-processing hint on the root logger
        try:
            q.quantize_static(
                str(src),
                str(out_path),
                reader,
                quant_format=q.QuantFormat.QDQ,
                op_types_to_quantize=list(options.op_types),
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=act,
                weight_type=q.QuantType.QInt8,
                nodes_to_exclude=exclude,
                calibrate_method=calib,
                extra_options=extra,
            )
        finally:
            root.setLevel(level)
    if getattr(reader, "clips_used", 1) == 0:
        raise DataError("the calibration data gave no clips")
    qmodel = onnx.load(str(out_path))
    check_memory_nodes_float(qmodel)
    onnx.checker.check_model(qmodel, full_check=True)
    quantized = sum(1 for n in qmodel.graph.node if n.op_type == "DequantizeLinear")
    kept = sorted({n.op_type for n in qmodel.graph.node if n.domain == DOMAIN})
    return Int8Report(method, int(getattr(reader, "clips_used", 0)), quantized, kept, asdict(options))


def _convs_feeding(graph, is_target) -> list[str]:
    """Names of the nearest Conv/ConvTranspose ancestors of the nodes selected by `is_target`."""
    producer = {o: n for n in graph.node for o in n.output}
    found, seen = [], set()
    todo = [x for n in graph.node if is_target(n) for x in n.input]
    while todo:
        x = todo.pop()
        p = producer.get(x)
        if p is None or p.name in seen:
            continue
        seen.add(p.name)
        if p.op_type in ("Conv", "ConvTranspose"):
            found.append(p.name)
        else:
            todo.extend(p.input)
    return found


def check_memory_nodes_float(model) -> None:
    """Raise if a `vadedge` memory node reads a quantised tensor directly (it must see float values)."""
    from vadedge.export.functions import DOMAIN

    producers = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.domain != DOMAIN:
            continue
        for x in n.input:
            p = producers.get(x)
            if p is not None and p.op_type == "QuantizeLinear":
                raise AssertionError(f"memory node {n.name} reads a quantised tensor {x}")
    if any(
        f.domain == DOMAIN and any(b.op_type in ("QuantizeLinear", "DequantizeLinear") for b in f.node)
        for f in model.functions
    ):
        raise AssertionError("a vadedge function body was quantised")
