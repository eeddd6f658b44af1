"""The code a Triton Python-backend model runs: our `Detector` with one stream per sequence.

The sequence batcher hands `execute` a list of requests, at most one per sequence and at most
`max_batch_size` of them; each carries the control inputs START / END / CORRID and one frame
(uint8, already resized on the edge) with its timestamp. `SequenceStreams.step` maps correlation
ids to Detector streams (created on START, dropped after END or after the sequence has been idle
for `max_sequence_idle_microseconds` — Triton frees the slot but does not tell the model, so the
model forgets idle streams itself) and runs all of them in one `Detector.process_many` call, i.e.
one batched ONNX Runtime call across cameras. The per-frame outputs are what the local Detector
returns (components, fused and smoothed score, is_anomaly, warm-up, events as JSON).

A request with END set and a NaN timestamp only ends its sequence (the client's `remove_stream` /
`close`): the state is dropped without scoring the (placeholder) frame it carries, and the
answer is an empty warm-up result.

`SequenceStreams` needs no Triton; `TritonPythonModel` adapts it to `triton_python_backend_utils`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..runtime.detector import Detector
from ..runtime.results import Event, FrameResult

logger = logging.getLogger(__name__)

# output tensor names (the client reads the same constants)
OUT_SCORE, OUT_RAW, OUT_COMPONENTS, OUT_FLAGS, OUT_EVENTS = "SCORE", "RAW_SCORE", "COMPONENTS", "FLAGS", "EVENTS"
IN_FRAME, IN_TIMESTAMP = "FRAME", "TIMESTAMP"
FLAG_WARMUP, FLAG_ANOMALY = 1, 2


@dataclass
class SequenceFrame:
    """One request: a frame of sequence `corrid` (START / END as the sequence batcher set them)."""

    corrid: int
    start: bool
    end: bool
    frame: np.ndarray
    timestamp: float


def event_dict(e: Optional[Event]) -> Optional[dict]:
    return None if e is None else e.to_dict()


def encode_result(r: FrameResult, components: list[str]) -> dict[str, np.ndarray]:
    """A FrameResult as this model's output tensors (no batch dimension)."""
    nan = float("nan")
    flags = (FLAG_WARMUP if r.warmup else 0) | (FLAG_ANOMALY if r.is_anomaly else 0)
    events = {"started": event_dict(r.event_started), "ended": event_dict(r.event_ended), "frame": r.frame_index}
    return {
        OUT_SCORE: np.array([nan if r.score is None else r.score], np.float32),
        OUT_RAW: np.array([nan if r.raw_score is None else r.raw_score], np.float32),
        OUT_COMPONENTS: np.array([r.components.get(c, nan) for c in components], np.float32),
        OUT_FLAGS: np.array([flags], np.int32),
        OUT_EVENTS: np.array([json.dumps(events).encode()], dtype=np.object_),
    }


class SequenceStreams:
    """Detector streams keyed by correlation id; see the module docstring."""

    def __init__(self, detector: Detector, idle_seconds: float) -> None:
        self.det = detector
        self.idle_seconds = idle_seconds
        self.components = list(detector.bundle.manifest.graph.scores)
        self._last_seen: dict[int, float] = {}

    def _name(self, corrid: int) -> str:
        return f"seq{corrid}"

    def step(self, frames: list[SequenceFrame]) -> list[dict[str, np.ndarray]]:
        """Process one frame per request (batched across sequences); outputs in request order."""
        now = time.monotonic()
        self._forget_idle(now, {f.corrid for f in frames})
        results: list[Optional[dict[str, np.ndarray]]] = [None] * len(frames)
        pending = list(enumerate(frames))
        while pending:  # a sequence appears at most once per call; repeats go to the next call
            seen: set[int] = set()
            batch: list[tuple[int, SequenceFrame]] = []
            rest: list[tuple[int, SequenceFrame]] = []
            for i, f in pending:
                (rest if f.corrid in seen else batch).append((i, f))
                seen.add(f.corrid)
            for i, f in batch:
                if f.end and math.isnan(f.timestamp):  # end only: drop the state, score nothing
                    self._drop(f.corrid, "stream_end")
                    results[i] = encode_result(
                        FrameResult(self._name(f.corrid), -1, f.timestamp, warmup=True), self.components
                    )
            batch = [(i, f) for i, f in batch if results[i] is None]
            pending = rest
            if not batch:
                continue
            for _, f in batch:
                if f.start:
                    self._drop(f.corrid, "stream_end")
                self._last_seen[f.corrid] = now
            # a bad frame (DataError) fails this call for every request in it: no partial state change
            out = self.det.process_many(
                {self._name(f.corrid): f.frame for _, f in batch}, {self._name(f.corrid): f.timestamp for _, f in batch}
            )
            for i, f in batch:
                results[i] = encode_result(out[self._name(f.corrid)], self.components)
                if f.end:
                    self._drop(f.corrid, "stream_end")
        return [r for r in results if r is not None]

    def _drop(self, corrid: int, reason: str) -> None:
        self._last_seen.pop(corrid, None)
        if self._name(corrid) in self.det.streams:
            self.det.remove_stream(self._name(corrid), reason)

    def _forget_idle(self, now: float, active: set[int]) -> None:
        for corrid, seen in list(self._last_seen.items()):
            if corrid not in active and now - seen > self.idle_seconds:
                logger.info("sequence %d idle for %.1f s: state dropped", corrid, now - seen)
                self._drop(corrid, "idle")

    @property
    def sequences(self) -> int:
        return len(self._last_seen)


class TritonPythonModel:
    """The Triton Python-backend entry point (model.py re-exports this class)."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in (config.get("parameters") or {}).items()}
        bundle = Path(args["model_repository"]) / args["model_version"] / params.get("bundle", "bundle")
        threads = int(params.get("threads", "0")) or None
        device = params.get("device", "cpu")
        if device == "auto":
            device = "cuda:0" if args.get("model_instance_kind") == "GPU" else "cpu"
        det = Detector.load(bundle, backend="onnxruntime", device=device, threads=threads, heatmap=False)
        idle_us = int((config.get("sequence_batching") or {}).get("max_sequence_idle_microseconds") or 1_000_000)
        self.streams = SequenceStreams(det, idle_us / 1e6)
        logger.info("vadedge model %s: %s", args.get("model_name"), det.describe())

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # in the stub only

        def scalar(req: Any, name: str) -> Any:
            return pb_utils.get_input_tensor_by_name(req, name).as_numpy().reshape(-1)[0]

        frames = []
        for req in requests:
            frame = pb_utils.get_input_tensor_by_name(req, IN_FRAME).as_numpy()
            frames.append(
                SequenceFrame(
                    int(scalar(req, "CORRID")),
                    bool(scalar(req, "START")),
                    bool(scalar(req, "END")),
                    frame[0] if frame.ndim == 4 else frame,
                    float(scalar(req, IN_TIMESTAMP)),
                )
            )
        try:
            outs = self.streams.step(frames)
        except Exception as exc:  # noqa: BLE001 - reported to every client of this batch
            logger.warning("vadedge model: batch failed: %s", exc)
            err = pb_utils.TritonError(f"vadedge: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=err) for _ in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, v[None]) for k, v in out.items()])
            for out in outs
        ]

    def finalize(self) -> None:
        self.streams.det.close()
