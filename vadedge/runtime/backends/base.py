"""The one small interface every inference backend implements (docs/design.md §7).

A backend runs the bundle's pure model function on a batch of clips: frames uint8
[B, clip_length, H, W, C] plus each stream's state (and MPN's adapted parameters) in, score
components, new state and optional extras (error map) out. It never keeps per-stream state itself:
the detector owns it, which is what makes batching several cameras into one call safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from ...bundle import Bundle, BundleError, GraphSpec, Manifest
from ...errors import ConfigError


@dataclass
class BackendOutput:
    """Batched results of one call: every array has the batch dimension first."""

    scores: dict[str, np.ndarray]  # component -> float [B]
    state: dict[str, np.ndarray] = field(default_factory=dict)  # state name -> [B, ...]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. error_map [B, h, w]


@dataclass(frozen=True)
class GraphIO:
    """The graph's tensor names, read from vadedge.json `graph`."""

    frames: str
    state: tuple[tuple[str, str, str], ...]  # (state name, input tensor, output tensor)
    params: tuple[tuple[str, str], ...]  # (param name, input tensor)
    scores: tuple[tuple[str, str], ...]  # (component, output tensor)
    extras: tuple[tuple[str, str], ...]  # (extra name, output tensor)
    batch: Optional[int]  # static batch size, None = dynamic
    side: tuple[tuple[str, str], ...] = ()  # (side input name, input tensor): host-computed, e.g. flow
    param_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (param name, unbatched shape)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> GraphIO:
        return cls.from_graph(manifest.graph)

    @classmethod
    def from_graph(cls, g: Union[GraphSpec, Mapping]) -> GraphIO:
        """From the `graph` section alone (a model not yet in a bundle: export, INT8 calibration)."""
        if not isinstance(g, GraphSpec):
            g = GraphSpec.from_dict(g)
        return cls(
            frames=g.frames_input,
            state=tuple((s.name, s.input, s.output) for s in g.state),
            params=tuple((p.name, p.input) for p in g.params),
            scores=tuple(g.scores.items()),
            extras=tuple(g.extra_outputs.items()),
            batch=g.static_batch,
            side=tuple((s.name, s.input) for s in g.side_inputs),
            param_shapes=tuple((p.name, tuple(p.shape)) for p in g.params),
        )

    def feeds(
        self,
        frames: np.ndarray,
        state: Mapping[str, np.ndarray],
        params: Optional[Mapping[str, np.ndarray]] = None,
        side: Optional[Mapping[str, np.ndarray]] = None,
    ) -> dict[str, np.ndarray]:
        """Graph input tensors {tensor name: array} of one call from arrays keyed by state / param / side names.

        The one place that maps vadedge.json names to graph tensor names on the way in (`Backend._split`
        maps the outputs back)."""
        feed = {self.frames: frames}
        for name, inp in self.side:
            feed[inp] = (side or {})[name]
        for name, inp, _ in self.state:
            feed[inp] = state[name]
        for name, inp in self.params:
            if params is None or name not in params:
                raise ConfigError(f"the model needs the adapted parameter '{name}'")
            feed[inp] = params[name]
        return feed

    @property
    def output_names(self) -> list[str]:
        return [t for _, t in self.scores] + [o for _, _, o in self.state] + [t for _, t in self.extras]


class Backend:
    """Base class: subclasses set `name`, `io`, `device` and implement `run`."""

    name = "base"

    def __init__(self, bundle: Optional[Bundle], io: Optional[GraphIO] = None) -> None:
        """`bundle` None only with `io`: a model that is not in a bundle yet (see OnnxRuntimeBackend.for_model)."""
        self.bundle = bundle
        if io is None:
            if bundle is None:
                raise ValueError("a Backend needs a bundle or the GraphIO of its model")
            io = GraphIO.from_manifest(bundle.manifest)
        self.io = io
        self.device = "cpu"
        self.label = f"bundle {bundle.path}" if bundle is not None else "model"  # names the model in errors

    @property
    def batch(self) -> Optional[int]:
        """Static batch size of the graph (streams per call), or None when any batch size works."""
        return self.io.batch

    @property
    def params_batched(self) -> bool:
        """Whether adapted parameters carry a per-stream batch dimension in the graph."""
        return True

    def run(
        self,
        frames: np.ndarray,
        state: Mapping[str, np.ndarray],
        params: Optional[Mapping[str, np.ndarray]] = None,
        side: Optional[Mapping[str, np.ndarray]] = None,
    ) -> BackendOutput:
        """One inference call on B clips; `state` and `side` arrays are [B, ...], params per the graph."""
        raise NotImplementedError

    def set_params(self, params: Mapping[str, np.ndarray]) -> bool:
        """Install adapted parameters inside the backend (TensorRT refit). False = feed them as inputs."""
        return False

    def describe(self) -> str:
        return f"{self.name} on {self.device}"

    def close(self) -> None:
        """Release sessions / device memory."""

    def _split(self, outputs: Mapping[str, np.ndarray]) -> BackendOutput:
        """Map graph output tensors back to component / state / extra names."""
        try:
            scores = {c: np.asarray(outputs[t], dtype=np.float32).reshape(-1) for c, t in self.io.scores}
            state = {n: np.asarray(outputs[o]) for n, _, o in self.io.state}
            extras = {n: np.asarray(outputs[t]) for n, t in self.io.extras if t in outputs}
        except KeyError as exc:
            raise BundleError(f"{self.label}: the model has no output {exc}") from exc
        return BackendOutput(scores, state, extras)
