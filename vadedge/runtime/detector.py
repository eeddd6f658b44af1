"""`Detector`: frames in, `FrameResult`s and events out, for one or many streams (docs/design.md §8).

    det = Detector.load("bundle/")                 # backend="auto": TensorRT engine > ORT GPU > ORT CPU
    r = det.process(frame)                         # one stream ("default")
    cams = [det.stream(f"cam{i}") for i in range(4)]
    results = det.process_many({cam: frame for cam, frame in zip(cams, frames)})  # one batched call

Each stream owns a ring buffer of preprocessed uint8 frames (`FrameRing`), its graph state (MNAD's
memory items, carried through the graph's `<name>_in` / `<name>_out` tensors), optional adapted
parameters (MPN) and a causal scorer. The backend keeps nothing per stream, so streams can be
batched in any combination and never see each other's state. Bundles exported with a static batch
N run N streams per call (a short batch is padded with a copy of its last clip, whose outputs are
discarded); batch-1 bundles fall back to one call per stream; dynamic bundles take any number.
Call a detector from one thread; its methods take an internal lock, so calls from several threads
are serialised rather than interleaved. Event callbacks run on the calling thread.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import numbers
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..bundle import Bundle, MaskSpec, load_bundle
from ..errors import CallbackError, ConfigError, DataError
from ..preprocess import InputSpec, prepare_frame
from .backends.base import Backend, BackendOutput
from .buffer import FrameRing
from .results import Event, FrameResult
from .runner import LocalScores, StreamRunner, side_providers
from .scoring import CausalScorer, ScoreRecipe

logger = logging.getLogger(__name__)
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
EventCallback = Callable[[Event], Any]
StreamKey = Union[str, "StreamHandle"]


class StreamHandle:
    """One camera / video stream of a Detector: its frame buffer, state, parameters and scorer."""

    def __init__(self, detector: Detector, name: str) -> None:
        self.name = name
        self._det = detector
        spec = detector.spec
        self.ring = FrameRing(detector.clip_length, (spec.height, spec.width, spec.channels))
        self.state: dict[str, np.ndarray] = detector.initial_state()
        self.params: dict[str, np.ndarray] = detector.base_params
        self.scorer = CausalScorer(detector.recipe, name)
        self.frame_index = -1  # index of the last frame received
        self.frame_shape: Optional[tuple[int, ...]] = None  # shape of this stream's input frames
        self.adapt_clips: Optional[list[np.ndarray]] = None  # collected for automatic adaptation
        self.adapted = False
        # host-computed side inputs (e.g. MAAM-Net's optical flow): one value per consecutive frame
        # pair, computed once when the frame arrives, the last clip_length − 1 kept
        self.side_history: dict[str, deque] = {
            k: deque(maxlen=detector.clip_length - 1) for k in detector.runner.side_providers
        }
        self._prev: Optional[np.ndarray] = None

    def process(self, frame: np.ndarray, timestamp: Optional[float] = None) -> FrameResult:
        """Feed one BGR (or gray) uint8 frame; returns its result (warm-up until a clip is full)."""
        return self._det.process_many({self: frame}, None if timestamp is None else {self: timestamp})[self.name]

    def reset(self) -> Optional[Event]:
        """Start over: empty buffer, initial state and parameters, fresh scorer. Returns a closed event."""
        return self._det.reset(self)

    def finish(self, reason: str = "stream_end") -> Optional[Event]:
        """The stream ended: close (and report) an open event."""
        with self._det._lock:
            ended = self.scorer.close(reason)
            if ended is not None:
                self._det._emit(ended)
            self._det._raise_callback_errors()
        return ended

    def adapt(self, k: Optional[int] = None, clips: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """MPN few-shot adaptation of this stream (see Detector.adapt)."""
        return self._det.adapt(self, k=k, clips=clips)

    @property
    def warm(self) -> bool:
        return self.ring.ready

    def __repr__(self) -> str:
        return f"StreamHandle({self.name!r}, frames={self.frame_index + 1})"


class Detector:
    """Runs a bundle on frames of one or more streams; see the module docstring."""

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend,
        recipe: ScoreRecipe,
        *,
        heatmap: bool = True,
        adapt_k: Optional[int] = None,
        mask: Optional[MaskSpec] = None,
    ) -> None:
        self.bundle = bundle
        self.backend = backend
        self.recipe = recipe
        self.heatmap = heatmap
        self.spec: InputSpec = bundle.input_spec
        self.clip_length = bundle.clip_length
        # the one state-carrying loop (runtime/runner.py); the detector adds buffers, batching and scoring
        self.runner = StreamRunner(
            backend,
            bundle.state,
            self.clip_length,
            side_providers(bundle.manifest.graph, f"bundle {bundle.path}"),
            LocalScores.of(bundle, mask),
        )
        if adapt_k is not None:
            if not self.runner.base_params:
                raise ConfigError(
                    f"adapt_k: bundle {bundle.path} ({bundle.manifest.family}) has no "
                    f"adaptable parameters; only MPN bundles adapt"
                )
            if adapt_k < 1:
                raise ConfigError(f"adapt_k must be >= 1, got {adapt_k}")
        self.adapt_k = adapt_k
        self._streams: dict[str, StreamHandle] = {}
        self._callbacks: list[tuple[EventCallback, str]] = []
        self._callback_errors: list[tuple[str, BaseException]] = []
        self._lock = threading.RLock()
        self.calls = 0  # inference calls made (batched calls count once)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        bundle: Union[str, Path, Bundle, None] = None,
        backend: str = "auto",
        device: str = "auto",
        *,
        precision: Optional[str] = None,
        threshold: Union[float, tuple[float, float], None] = None,
        smoothing: Optional[float] = None,
        min_event_frames: Optional[int] = None,
        heatmap: bool = True,
        threads: Optional[int] = None,
        plugin_libraries: Sequence[str] = (),
        engine: Union[str, Path, None] = None,
        providers: Optional[Sequence[Any]] = None,
        provider_options: Optional[Mapping] = None,
        cuda_graphs: bool = True,
        adapt_k: Optional[int] = None,
        calibration: Optional[Mapping[str, Any]] = None,
        mask: Optional[MaskSpec] = None,
    ) -> Detector:
        """Load a bundle folder (None = the default bundle shipped with vadedge) on a backend.

        backend: "auto" (a TensorRT engine of the bundle if tensorrt is installed, else ONNX Runtime
        on a GPU if onnxruntime-gpu is, else ONNX Runtime on the CPU), "onnxruntime", "tensorrt" or
        "torch" (a checkpoint folder written by `vadedge train`; needs vadedge[train]).
        device: "auto", "cpu", "cuda[:N]" or, for ONNX Runtime, "tensorrt[:N]" (its TensorRT EP).
        threshold / smoothing / min_event_frames override the bundle's calibrated values;
        threshold is one number or (on, off). calibration ({component: vadedge.scoring.RobustStats})
        replaces the bundle's score statistics (e.g. for a checkpoint, which has none). adapt_k: MPN
        bundles adapt each stream on its first K clips (needs torch). mask: an ROI / privacy mask
        (vadedge.roi) for the local score components, replacing the bundle's `score.mask`.
        """
        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if bundle is None:
            from .defaults import default_bundle

            bundle = default_bundle()
        if not isinstance(bundle, Bundle):
            path = Path(bundle)
            if backend in ("auto", "torch") and _is_checkpoint(path):
                backend = "torch"
                from .backends.torch import bundle_from_checkpoint

                bundle = bundle_from_checkpoint(path)
            else:
                bundle = load_bundle(path)
        if backend == "auto":
            backend, device = _auto_backend(bundle, device)
        be = _make_backend(
            backend,
            bundle,
            device,
            precision=precision,
            threads=threads,
            plugin_libraries=plugin_libraries,
            engine=engine,
            providers=providers,
            provider_options=provider_options,
            cuda_graphs=cuda_graphs,
        )
        recipe = ScoreRecipe.from_manifest(
            bundle.manifest.score,
            threshold=threshold,
            smoothing=smoothing,
            min_event_frames=min_event_frames,
            calibration=calibration,
        )
        return cls(bundle, be, recipe, heatmap=heatmap, adapt_k=adapt_k, mask=mask)

    @staticmethod
    def connect(url: str, model: str = "vadedge", **kw: Any) -> Any:
        """A `vadedge.serving.client.RemoteDetector`: this API served by Triton (docs/deployment.md)."""
        from ..serving.client import RemoteDetector

        return RemoteDetector(url, model, **kw)

    # ------------------------------------------------------------------ streams
    def stream(self, name: str = "default") -> StreamHandle:
        """The handle of stream `name` (created on first use)."""
        with self._lock:
            if name not in self._streams:
                self._streams[name] = StreamHandle(self, str(name))
                if self.adapt_k is not None:
                    self._streams[name].adapt_clips = []
            return self._streams[name]

    @property
    def streams(self) -> dict[str, StreamHandle]:
        return dict(self._streams)

    def _handle(self, key: StreamKey) -> StreamHandle:
        if isinstance(key, StreamHandle):
            if key._det is not self:
                raise ConfigError(f"stream {key.name!r} belongs to another Detector")
            return key
        return self.stream(str(key))

    def initial_state(self) -> dict[str, np.ndarray]:
        """A fresh copy of one stream's initial graph state (unbatched), keyed by state name."""
        return self.runner.initial_state()

    @property
    def base_params(self) -> dict[str, np.ndarray]:
        """The bundle's adapted parameters before any adaptation (MPN; empty for other families)."""
        return self.runner.base_params

    def on_event(self, callback: EventCallback, when: str = "both") -> EventCallback:
        """Call `callback(event)` when an event starts ("start"), ends ("end") or both.

        A started event has `event.is_open`; an ended one has `end_frame` / `reason` set. Usable
        as a decorator.
        """
        if when not in ("start", "end", "both"):
            raise ConfigError(f"when must be 'start', 'end' or 'both', got {when!r}")
        self._callbacks.append((callback, when))
        return callback

    def _emit(self, event: Event) -> None:
        """Call the callbacks; one that raises is recorded (see `_raise_callback_errors`), so the
        other callbacks and the other streams of the same call still run and stay in step."""
        kind = "start" if event.is_open else "end"
        for cb, when in self._callbacks:
            if when in ("both", kind):
                try:
                    cb(event)
                except Exception as exc:  # noqa: BLE001 - re-raised as CallbackError after the call
                    logger.debug("event callback %r raised on stream %r", cb, event.stream, exc_info=True)
                    self._callback_errors.append((event.stream, exc))

    def _raise_callback_errors(self, results: object = None) -> None:
        if self._callback_errors:
            errors, self._callback_errors = self._callback_errors, []
            raise CallbackError(errors, results) from errors[0][1]

    # ------------------------------------------------------------------ processing
    def process(self, frame: np.ndarray, timestamp: Optional[float] = None) -> FrameResult:
        """Feed one frame of the default stream."""
        return self.stream("default").process(frame, timestamp)

    def process_many(
        self, frames: Mapping[StreamKey, np.ndarray], timestamps: Optional[Mapping[StreamKey, float]] = None
    ) -> dict[str, FrameResult]:
        """Feed one frame to each of several streams; all ready streams share batched inference calls.

        Returns {stream name: FrameResult}. Frames and timestamps are validated before any stream
        changes, so a bad one raises DataError and leaves every stream as it was. An event callback
        that raises does not stop the other streams: all are processed, then CallbackError is raised
        (its `results` are this call's results).
        """
        if not isinstance(frames, Mapping):
            raise DataError(f"process_many takes a mapping {{stream: frame}}, got {type(frames).__name__}")
        if timestamps is not None and not isinstance(timestamps, Mapping):
            raise DataError(f"timestamps must be a mapping {{stream: seconds}}, got {type(timestamps).__name__}")
        with self._lock:
            t0 = time.perf_counter()
            items = [(self._handle(k), f) for k, f in frames.items()]
            if len({h.name for h, _ in items}) != len(items):
                raise ConfigError("process_many got the same stream twice")
            ts = {self._handle(k).name: _timestamp(v, k) for k, v in (timestamps or {}).items()}
            prepared = [(h, self._prepare(h, f)) for h, f in items]
            now = time.time()
            results: dict[str, FrameResult] = {}
            ready: list[StreamHandle] = []
            for h, pf in prepared:
                h.frame_shape = h.frame_shape or pf[1]
                h.ring.push(pf[0])
                h.frame_index += 1
                if self.runner.side_providers:
                    if h._prev is not None:
                        for k, provider in self.runner.side_providers.items():
                            h.side_history[k].append(provider(h._prev, pf[0]))
                    h._prev = pf[0]
                if h.ring.ready:
                    ready.append(h)
                else:
                    results[h.name] = FrameResult(
                        h.name,
                        h.frame_index,
                        ts.get(h.name, now),
                        warmup=True,
                        latency_ms=(time.perf_counter() - t0) * 1e3,
                    )
            for group in self._groups(ready):
                out = self._infer(group)
                for i, h in enumerate(group):
                    results[h.name] = self._score(h, out, i, ts.get(h.name, now), t0)
            for h in ready:
                self._maybe_adapt(h)
            ordered = {h.name: results[h.name] for h, _ in items}
            self._raise_callback_errors(ordered)
            return ordered

    def _prepare(self, h: StreamHandle, frame: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        if not isinstance(frame, np.ndarray):
            raise DataError(f"stream {h.name!r}: frames must be numpy uint8 arrays, got {type(frame).__name__}")
        if frame.size == 0:
            raise DataError(f"stream {h.name!r}: empty frame of shape {frame.shape}")
        if h.frame_shape is not None and frame.shape != h.frame_shape:
            raise DataError(
                f"stream {h.name!r}: got a frame of shape {frame.shape} after frames of "
                f"{h.frame_shape}; a new resolution needs reset() (or a new stream)"
            )
        try:
            pf = prepare_frame(frame, self.spec)
        except DataError as exc:
            raise DataError(f"stream {h.name!r}: {exc}") from None
        return pf, frame.shape

    def _groups(self, ready: list[StreamHandle]) -> Iterable[list[StreamHandle]]:
        """Chunks of streams that can share one call (same params object if params are unbatched)."""
        if not ready:
            return []
        by_params: dict[int, list[StreamHandle]] = {}
        if self.base_params and not self.backend.params_batched:
            for h in ready:
                by_params.setdefault(id(h.params), []).append(h)
            buckets = list(by_params.values())
        else:
            buckets = [ready]
        size = self.backend.batch
        chunks: list[list[StreamHandle]] = []
        for bucket in buckets:
            step = size or len(bucket)
            chunks.extend(bucket[i : i + step] for i in range(0, len(bucket), step))
        return chunks

    def _infer(self, group: list[StreamHandle]) -> BackendOutput:
        size = self.backend.batch or len(group)
        padded = group + [group[-1]] * (size - len(group))
        frames = np.stack([h.ring.clip() for h in padded])
        state = {k: np.stack([h.state[k] for h in padded]) for k in self.runner.state_names}
        params = None
        if self.base_params:
            params = (
                {k: np.stack([h.params[k] for h in padded]) for k in self.base_params}
                if self.backend.params_batched
                else group[0].params
            )
        side = {k: np.stack([np.stack(h.side_history[k]) for h in padded]) for k in self.runner.side_providers} or None
        out = self.runner.step(frames, state, params, side)
        self.calls += 1
        return out

    def _score(self, h: StreamHandle, out: BackendOutput, i: int, t: float, t0: float) -> FrameResult:
        h.state = {k: np.array(v[i], copy=True) for k, v in out.state.items()}
        comps = {c: float(v[i]) for c, v in out.scores.items()}
        score, raw, flag, started, ended = h.scorer.update(h.frame_index, t, comps)
        heat = None
        if self.heatmap and "error_map" in out.extras:
            heat = np.array(out.extras["error_map"][i], dtype=np.float32, copy=True)
        res = FrameResult(
            h.name,
            h.frame_index,
            t,
            score=score,
            raw_score=raw,
            components=comps,
            is_anomaly=flag,
            event_started=started,
            event_ended=ended,
            heatmap=heat,
            latency_ms=(time.perf_counter() - t0) * 1e3,
        )
        if ended is not None:
            self._emit(ended)
        if started is not None:
            self._emit(started)
        return res

    # ------------------------------------------------------------------ lifecycle
    def reset(self, stream: Optional[StreamKey] = None) -> Optional[Event]:
        """Reset one stream (or all when None): buffer, state, parameters and scorer."""
        with self._lock:
            handles = [self._handle(stream)] if stream is not None else list(self._streams.values())
            last = None
            for h in handles:
                ended = h.scorer.reset("reset")
                if ended is not None:
                    self._emit(ended)
                    last = ended
                h.ring.reset()
                h.state = self.initial_state()
                h.params = self.base_params
                h.frame_shape = None
                h.adapt_clips = [] if self.adapt_k is not None else None
                h.adapted = False
                h._prev = None
                for q in h.side_history.values():
                    q.clear()
            self._raise_callback_errors(last)
            return last

    def remove_stream(self, stream: StreamKey, reason: str = "stream_end") -> Optional[Event]:
        """Forget a stream (buffer, state, scorer); an open event is closed and reported first."""
        with self._lock:
            h = self._handle(stream)
            ended = h.finish(reason)
            self._streams.pop(h.name, None)
            return ended

    def finish(self, reason: str = "stream_end") -> list[Event]:
        """All streams ended (end of input, Ctrl-C): close and report every open event."""
        with self._lock:
            ended = []
            for h in self._streams.values():
                e = h.scorer.close(reason)
                if e is not None:
                    self._emit(e)
                    ended.append(e)
            self._raise_callback_errors(ended)
            return ended

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ adaptation (MPN)
    def adapt(
        self, stream: StreamKey = "default", k: Optional[int] = None, clips: Optional[np.ndarray] = None
    ) -> dict[str, np.ndarray]:
        """Few-shot adapt a stream's parameters (MPN) on `clips` uint8 [K, N, H, W, C].

        Without `clips`, uses the stream's buffered clip (k = 1) — pass clips, or load with
        `adapt_k=K` to adapt automatically on each stream's first K clips. Needs torch and the
        model's checkpoint; the adapted parameters are fed to ONNX Runtime as graph inputs and
        installed in a TensorRT engine by refit.
        """
        with self._lock:
            return self._adapt(stream, k, clips)

    def _adapt(self, stream: StreamKey, k: Optional[int], clips: Optional[np.ndarray]) -> dict[str, np.ndarray]:
        from .adaptation import adapt_parameters

        h = self._handle(stream)
        if not self.base_params:
            raise ConfigError(
                f"bundle {self.bundle.path} ({self.bundle.manifest.family}) has no adaptable "
                f"parameters; only MPN bundles adapt"
            )
        if clips is None:
            if not h.ring.ready:
                raise DataError(f"stream {h.name!r} has no full clip yet to adapt on")
            clips = np.array(h.ring.clip())[None]
        clips = np.asarray(clips)
        if k is not None:
            clips = clips[:k]
        new = adapt_parameters(self.bundle, clips, self.base_params)
        if self.backend.set_params(new):
            for other in self._streams.values():  # a refit changes the engine for every stream
                other.params = new
        h.params = new
        h.adapted = True
        return new

    def _maybe_adapt(self, h: StreamHandle) -> None:
        if h.adapt_clips is None or h.adapted:
            return
        h.adapt_clips.append(np.array(h.ring.clip()))
        if self.adapt_k is not None and len(h.adapt_clips) >= self.adapt_k:
            clips = np.stack(h.adapt_clips)
            h.adapt_clips = None
            self.adapt(h, clips=clips)

    @property
    def frame_rate(self) -> float:
        """The frame rate the model was trained at (vadedge.json `input.fps`, default 10): sample
        sources at it, e.g. `open_source(spec, sample_fps=det.frame_rate)` (docs/runtime.md)."""
        return self.bundle.manifest.input.frame_rate

    def describe(self) -> str:
        m = self.bundle.manifest
        batch = m.graph.batch
        return (
            f"{m.family} ({m.preset or 'custom'}) {self.spec.height}x{self.spec.width} "
            f"{self.spec.color}, clip {self.clip_length}, {self.frame_rate:g} fps, batch {batch}, "
            f"{self.backend.describe()}"
        )


def _timestamp(value: Any, stream: Any) -> float:
    """A finite number of seconds, or DataError naming the stream."""
    name = stream.name if isinstance(stream, StreamHandle) else stream
    if not isinstance(value, numbers.Real):
        raise DataError(f"stream {name!r}: timestamp must be a number of seconds, got {value!r}")
    try:
        t = float(value)
    except OverflowError:
        t = math.inf
    if not math.isfinite(t):
        raise DataError(f"stream {name!r}: timestamp must be finite, got {value!r}")
    return t


def _is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and not (path / "vadedge.json").is_file()


def _auto_backend(bundle: Bundle, device: str) -> tuple[str, str]:
    """TensorRT if the bundle has an engine and tensorrt is importable; else ORT on a GPU; else ORT CPU."""
    if device not in (None, "auto") and not str(device).startswith("cuda"):
        return "onnxruntime", device
    if bundle.manifest.engines and importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt", device if device not in (None, "auto") else "cuda:0"
    if device in (None, "auto"):
        from .._optional import require

        ort = require("onnxruntime")
        device = "cuda:0" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu"
    return "onnxruntime", device


def _warn_ignored_trt_options(device: str, engine: Any, plugin_libraries: Sequence[str]) -> None:
    """ONNX Runtime never reads a TensorRT engine file, and loads plugins only through its TensorRT EP."""
    if engine is not None:
        logger.warning(
            "engine %s is ignored: the ONNX Runtime backend runs the bundle's ONNX model "
            "(use backend 'tensorrt' to run an engine)",
            engine,
        )
    if plugin_libraries and not str(device).lower().startswith(("tensorrt", "trt")):
        logger.warning(
            "plugin libraries are ignored on ONNX Runtime device %r: only its TensorRT "
            "provider (device tensorrt[:N]) or backend 'tensorrt' loads them",
            device,
        )


def _make_backend(name: str, bundle: Bundle, device: str, **kw: Any) -> Backend:
    if name == "onnxruntime":
        from .backends.onnxruntime import OnnxRuntimeBackend

        dev = "cpu" if device in (None, "auto") else device
        _warn_ignored_trt_options(dev, kw["engine"], kw["plugin_libraries"])
        return OnnxRuntimeBackend(
            bundle,
            device=dev,
            precision=kw["precision"],
            providers=kw["providers"],
            threads=kw["threads"],
            plugin_libraries=kw["plugin_libraries"],
            provider_options=kw["provider_options"],
        )
    if name == "tensorrt":
        from .backends.tensorrt import TensorRTBackend

        dev = "cuda:0" if device in (None, "auto") else device
        return TensorRTBackend(
            bundle,
            engine=kw["engine"],
            device=dev,
            precision=kw["precision"],
            plugin_libraries=kw["plugin_libraries"],
            cuda_graphs=kw["cuda_graphs"],
        )
    if name == "torch":
        from .backends.torch import TorchBackend

        return TorchBackend(bundle, device="cpu" if device in (None, "auto") else device, threads=kw["threads"])
    raise ConfigError(f"unknown backend {name!r}")
