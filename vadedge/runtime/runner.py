"""`StreamRunner`: the one state-carrying stream loop — clip → graph (state in, state out) → score components.

Every caller that runs a bundle's graph over frames goes through it: `Detector` (one runner for all its
streams, batching them), export (score calibration and the parity checks), INT8 calibration and the
benchmark's model-only calls. It keeps no per-stream state itself: callers pass the state in and get the
next state back, so one runner serves any number of streams (docs/design.md §1, §8).

Key convention: state, adapted parameters and side inputs are keyed by their vadedge.json *names*
(`graph.state[].name`, e.g. "memory"), never by graph tensor names ("memory_in" / "memory_out").
Only the backend's `GraphIO` maps names to tensors (`GraphIO.feeds` in, `Backend._split` out).
Batched arrays have the batch first; an unbatched state is one stream's (the shapes in state.npz).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ..bundle import Bundle, BundleError, GraphSpec, LocalSpec, MaskSpec
from ..errors import ConfigError, VadedgeError
from ..scoring import error_map_cell, local_components
from .backends.base import Backend, BackendOutput

if TYPE_CHECKING:
    from vadedge.train.protocols import StreamModel

    from ..flow import FlowProvider


class StreamRunner:
    """A Backend plus the initial state, adapted parameters and host side inputs of its graph."""

    def __init__(
        self,
        backend: Backend,
        state: Mapping[str, np.ndarray],
        clip_length: int,
        side_providers: Optional[Mapping[str, FlowProvider]] = None,
        local: Optional[LocalScores] = None,
    ) -> None:
        """`state`: the bundle's state.npz contents (initial stream state and default adapted parameters);
        `local`: derived components added to every call's scores (a bundle's `score.local`)."""
        self.backend = backend
        self.local = local
        self.clip_length = int(clip_length)
        missing = [n for n, _, _ in backend.io.state] + [n for n, _ in backend.io.params]
        missing = [n for n in missing if n not in state]
        if missing:
            raise BundleError(f"{backend.label}: no initial value for {', '.join(missing)}")
        self._state0 = {n: np.asarray(state[n]) for n, _, _ in backend.io.state}
        self.base_params: dict[str, np.ndarray] = {n: np.asarray(state[n]) for n, _ in backend.io.params}
        self.side_providers: dict[str, FlowProvider] = dict(side_providers or {})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(
        cls, bundle: Bundle, precision: Optional[str] = None, threads: Optional[int] = None
    ) -> StreamRunner:
        """ONNX Runtime on the CPU running the bundle's `precision` model (default: what it was exported to run)."""
        from .backends.onnxruntime import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend(bundle, device="cpu", precision=precision, threads=threads)
        return cls(
            backend,
            bundle.state,
            bundle.clip_length,
            side_providers(bundle.manifest.graph, backend.label),
            LocalScores.of(bundle),
        )

    @classmethod
    def for_model(
        cls,
        model: Union[str, Path, bytes],
        graph: Union[GraphSpec, Mapping],
        clip_length: int,
        state: Mapping[str, np.ndarray],
        *,
        precision: str = "fp32",
        threads: Optional[int] = None,
    ) -> StreamRunner:
        """ONNX Runtime on the CPU for a model file not yet in a bundle (the exporter, INT8 calibration)."""
        from .backends.onnxruntime import OnnxRuntimeBackend

        graph = graph if isinstance(graph, GraphSpec) else GraphSpec.from_dict(graph)
        backend = OnnxRuntimeBackend.for_model(model, graph, precision=precision, threads=threads)
        return cls(backend, state, clip_length, side_providers(graph, backend.label))

    @classmethod
    def for_torch(
        cls, model: StreamModel, state: Optional[Mapping] = None, *, device: str = "cpu", threads: Optional[int] = None
    ) -> StreamRunner:
        """A torch stream model in memory (train/protocols.py `StreamModel`) run as it is, from its
        unbatched `state` (default: `model.initial_state()`): the torch reference that export parity
        checks compare ONNX against, and the loop experiments score with. Needs vadedge[train]."""
        from .backends.torch import TorchBackend, numpy_state

        state = numpy_state(model.initial_state() if state is None else state)
        backend = TorchBackend.for_model(model, state, device=device, threads=threads)
        return cls(backend, state, model.clip_length, side_providers(backend.graph, backend.label))

    # ------------------------------------------------------------------ state
    @property
    def batch(self) -> Optional[int]:
        """Static batch of the graph (streams per call), None when any batch size works."""
        return self.backend.batch

    @property
    def state_names(self) -> list[str]:
        return list(self._state0)

    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh copy of one stream's initial state (unbatched)."""
        return {k: v.copy() for k, v in self._state0.items()}

    def batched_state(self, batch: int = 1, state: Optional[Mapping[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
        """One stream's state (default: the initial one) repeated into `batch` slots: {name: [batch, ...]}."""
        state = self._state0 if state is None else state
        return {k: np.repeat(np.asarray(state[k])[None], batch, axis=0) for k in self._state0}  # copies

    def call_params(
        self, batch: int = 1, params: Optional[Mapping[str, np.ndarray]] = None
    ) -> Optional[dict[str, np.ndarray]]:
        """Adapted parameters (default: the bundle's) as a call takes them: per slot if the graph batches
        them, else shared; None for graphs without adapted parameters."""
        if not self.base_params:
            return None
        params = self.base_params if params is None else params
        if not self.backend.params_batched:
            return {k: np.asarray(params[k]) for k in self.base_params}
        return {k: np.repeat(np.asarray(params[k])[None], batch, axis=0) for k in self.base_params}

    # ------------------------------------------------------------------ calls
    def step(
        self,
        clips: np.ndarray,
        state: Mapping[str, np.ndarray],
        params: Optional[Mapping[str, np.ndarray]] = None,
        side: Optional[Mapping[str, np.ndarray]] = None,
    ) -> BackendOutput:
        """One model call: uint8 clips [B, N, H, W, C] and batched state → components, next state, extras.

        No buffering and no scoring (what the bench times as a model-only call). `side` None on a graph
        with side inputs: computed here from the clips (callers that stream keep them incrementally)."""
        if side is None and self.side_providers:
            side = self.clip_side_inputs(clips)
        out = self.backend.run(clips, state, params, side)
        if self.local is not None:
            out.scores.update(self.local(out.extras, self.backend.label))
        return out

    def clip_side_inputs(self, clips: np.ndarray) -> Optional[dict[str, np.ndarray]]:
        """The side inputs of whole clips [B, N, H, W, C] computed on the host: {name: [B, N − 1, ...]}."""
        if not self.side_providers:
            return None
        return {
            name: np.ascontiguousarray(provider.clip_flow(clips), dtype=np.float32)
            for name, provider in self.side_providers.items()
        }

    def graph_feeds(
        self, clips: np.ndarray, state: Mapping[str, np.ndarray], params: Optional[Mapping[str, np.ndarray]] = None
    ) -> dict[str, np.ndarray]:
        """Graph input tensors of one call, side inputs computed (what ONNX Runtime's INT8 calibration reads)."""
        return self.backend.io.feeds(clips, state, params, self.clip_side_inputs(clips))

    def score_frames(
        self,
        frames: np.ndarray,
        state: Optional[Mapping[str, np.ndarray]] = None,
        params: Optional[Mapping[str, np.ndarray]] = None,
    ) -> dict[str, np.ndarray]:
        """Components of one stream over preprocessed uint8 frames (T, H, W, C), state carried from
        `state` (unbatched; default: the initial state): one value per frame from clip_length − 1 on.

        The same frames through `Detector.process` give the same components. A static batch B > 1
        graph runs the stream in every slot and reads slot 0.
        """
        b = self.batch or 1
        n = self.clip_length
        carried = self.batched_state(b, state)
        call_params = self.call_params(b, params)
        history: dict[str, deque[np.ndarray]] = {k: deque(maxlen=n - 1) for k in self.side_providers}
        values: dict[str, list[float]] = {}
        for t in range(len(frames)):
            if t > 0:
                for k, provider in self.side_providers.items():
                    history[k].append(provider(frames[t - 1], frames[t]))
            if t < n - 1:
                continue
            clip = np.ascontiguousarray(np.broadcast_to(frames[t - n + 1 : t + 1], (b, n, *frames.shape[1:])))
            side = {
                k: np.ascontiguousarray(np.broadcast_to(np.stack(h), (b, *np.shape(np.stack(h)))))
                for k, h in history.items()
            } or None
            out = self.step(clip, carried, call_params, side)
            carried = out.state or carried
            for k, v in out.scores.items():
                values.setdefault(k, []).append(float(v[0]))
        if not values:
            names = [c for c, _ in self.backend.io.scores] + list(self.local.windows if self.local else ())
            return {k: np.zeros(0) for k in names}
        return {k: np.asarray(v) for k, v in values.items()}

    def close(self) -> None:
        self.backend.close()


class LocalScores:
    """A bundle's derived `score.local` components, computed from the graph's extra outputs.

    One implementation, `vadedge.scoring.local_components`; the optional ROI / privacy `mask`
    (1 = scored, 0 = ignored, at the error map's resolution) is multiplied into the map first.
    """

    def __init__(
        self, local: Mapping[str, LocalSpec], input_hw: tuple[int, int], mask: Optional[MaskSpec] = None
    ) -> None:
        self.windows = {name: spec.window for name, spec in local.items()}
        self.sources = {name: spec.source for name, spec in local.items()}
        self.input_hw = input_hw
        self.mask = mask
        self._weights: dict[tuple[int, int], np.ndarray] = {}  # error-map shape -> cell weights of the mask

    @classmethod
    def of(cls, bundle: Bundle, mask: Optional[MaskSpec] = None) -> Optional[LocalScores]:
        """The bundle's local components (None when it declares none: the graph's scores only).

        `mask` (a run-time ROI / privacy mask) replaces the bundle's `score.mask`."""
        score = bundle.manifest.score
        if not score.local:
            if mask is not None:
                raise ConfigError(
                    f"bundle {bundle.path} has no local score components (score.local), so a "
                    f"mask would change nothing; re-score it with local components first"
                )
            return None
        inp = bundle.manifest.input
        return cls(score.local, (inp.height, inp.width), mask if mask is not None else score.mask)

    def mask_weights(self, map_hw: tuple[int, int]) -> Optional[np.ndarray]:
        """The mask at the error map's resolution (computed once per map shape), None without a mask."""
        if self.mask is None:
            return None
        if map_hw not in self._weights:
            from ..roi import cell_weights

            self._weights[map_hw] = cell_weights(self.mask, self.input_hw, error_map_cell(self.input_hw, map_hw))
        return self._weights[map_hw]

    def __call__(self, extras: Mapping[str, np.ndarray], label: str) -> dict[str, np.ndarray]:
        """{component: float32 [B]} from one call's extra outputs."""
        out: dict[str, np.ndarray] = {}
        for source in sorted(set(self.sources.values())):
            if source not in extras:
                raise BundleError(
                    f"{label}: score.local needs the graph output '{source}', which this model did not return"
                )
            windows = {n: w for n, w in self.windows.items() if self.sources[n] == source}
            maps = np.asarray(extras[source], dtype=np.float64)
            maps = maps.reshape(maps.shape[0], *maps.shape[-2:])  # [B, 1, h, w] or [B, h, w]
            try:
                comps = local_components(maps, windows, self.input_hw, self.mask_weights(maps.shape[-2:]))
            except VadedgeError as exc:
                raise BundleError(f"{label}: {exc}") from exc
            out.update({n: np.asarray(v, dtype=np.float32).reshape(-1) for n, v in comps.items()})
        return out


def side_providers(graph: GraphSpec, label: str) -> dict[str, FlowProvider]:
    """Host-side producers of the graph's side inputs (only optical flow providers exist so far)."""
    out = {}
    for item in graph.side_inputs:
        if item.provider is None:
            raise BundleError(f"{label}: side input '{item.name}' names no provider, so the runtime cannot compute it")
        from ..flow import get_flow_provider

        out[item.name] = get_flow_provider(dict(item.provider))
    return out
