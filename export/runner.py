"""Run an exported stream-step graph with ONNX Runtime, the state carried by the caller (numpy only).

Used by score calibration, INT8 calibration, parity tests and the export-quality experiment; it is a
minimal reference caller, not the product runtime (`vadedge.runtime`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from vadedge.bundle import GraphSpec
from vadedge.runtime.backends.onnxruntime import make_session


class OnnxStream:
    """A stream-step graph in ONNX Runtime; `graph` is the vadedge.json `graph` section."""

    def __init__(self, model: Union[str, Path, bytes], graph: GraphSpec, clip_length: int, *,
                 threads: Optional[int] = None, session=None) -> None:
        self.session = session if session is not None else make_session(model, threads=threads)
        self.graph = graph
        self.clip_length = int(clip_length)
        self.score_outputs = dict(graph.scores)
        self.batch = graph.batch
        self.side_inputs = list(graph.side_inputs)
        self._providers = {}
        for item in self.side_inputs:  # host-computed inputs; a "provider" entry names an optical-flow provider
            if item.provider is not None:
                from vadedge.flow import get_flow_provider

                self._providers[item.input] = get_flow_provider(dict(item.provider))

    def host_inputs(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's side inputs for uint8 clips [B, N, H, W, C] (e.g. optical flow), computed on the host."""
        feeds = {}
        for item in self.side_inputs:
            provider = self._providers.get(item.input)
            if provider is None:
                raise ValueError(f"no host provider for side input '{item.input}'")
            feeds[item.input] = np.ascontiguousarray(provider.clip_flow(frames), dtype=np.float32)
        return feeds

    @classmethod
    def from_bundle(cls, bundle, precision: str = "fp32", threads: Optional[int] = None) -> "OnnxStream":
        return cls(bundle.model_file(precision), bundle.manifest.graph, bundle.clip_length, threads=threads)

    @property
    def static_batch(self) -> int:
        return 1 if self.batch == "dynamic" else int(self.batch)

    def batched_state(self, state: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        """Unbatched per-stream state {name: array} → graph feeds {<name>_in: [batch, ...]}.

        Adapted parameters (`graph.params`, MPN) are shared by the call and fed unbatched.
        """
        feeds = {}
        for item in self.graph.state:
            arr = np.asarray(state[item.name], dtype=np.float32)
            feeds[item.input] = np.ascontiguousarray(np.broadcast_to(arr, (batch, *arr.shape)))
        for item in self.graph.params:
            feeds[item.input] = np.ascontiguousarray(state[item.name], dtype=np.float32)
        return feeds

    def step(self, frames: np.ndarray, state_feeds: dict[str, np.ndarray]
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """One call: uint8 frames [B, N, H, W, C] + state feeds → (scores [B], next state feeds, extra outputs)."""
        names = [o.name for o in self.session.get_outputs()]
        feeds = {self.graph.frames_input: frames, **state_feeds}
        if self.side_inputs:
            feeds.update(self.host_inputs(frames))
        outs = dict(zip(names, self.session.run(None, feeds)))
        scores = {c: outs[o] for c, o in self.score_outputs.items()}
        new_state = {item.input: outs[item.output] for item in self.graph.state}
        new_state.update({item.input: state_feeds[item.input] for item in self.graph.params})
        extras = {k: outs[o] for k, o in self.graph.extra_outputs.items() if o in outs}
        return scores, new_state, extras

    def score_frames(self, frames: np.ndarray, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One stream over uint8 frames (T, H, W, C) from an unbatched state, carrying the state.

        Same contract as `vadedge.train.evaluate.score_frames`: one value per frame from clip_length − 1 on.
        A static batch B > 1 graph runs the stream in slot 0 (the other slots repeat it).
        """
        b = self.static_batch
        feeds = self.batched_state(state, b)
        values: dict[str, list[float]] = {k: [] for k in self.score_outputs}
        n = self.clip_length
        for t in range(n - 1, len(frames)):
            clip = np.ascontiguousarray(np.broadcast_to(frames[t - n + 1:t + 1], (b, *frames[t - n + 1:t + 1].shape)))
            scores, feeds, _ = self.step(clip, feeds)
            for k in values:
                values[k].append(float(scores[k][0]))
        return {k: np.asarray(v) for k, v in values.items()}
