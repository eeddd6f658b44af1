"""`RemoteDetector`: the `Detector` API over a Triton server running `vadedge triton-repo`'s model.

    det = RemoteDetector.connect("grpc://host:8001", model="vadedge")   # or Detector.connect(...)
    cam = det.stream("cam0")                  # one Triton sequence (correlation id) per stream
    fut = cam.submit(frame)                   # pipelined: returns a Future[FrameResult]
    r = cam.process(frame)                    # submit + wait
    results = det.process_many({cam: frame, ...})

What crosses the network per frame: the frame resized on the camera side to the bundle's input
size, uint8 H×W×C (C = 1 for gray bundles, else 3 in BGR order: the server converts to RGB
exactly as the local Detector does), a float64 timestamp and the sequence controls; back come
the fused / smoothed score, the components, two flags and the events as JSON (~100 bytes).
All requests go over one gRPC bidirectional stream, which keeps each sequence's requests in
order without waiting a round trip per frame.

Failure: when the stream breaks (server restart, dropped connection) the client reconnects
with exponential backoff, gives every stream a new sequence (the server's state is gone), resends
the frames that had no result yet as the first frames of that sequence — so their results are
warm-up again — and closes an open event with reason "server_restart" (reported on the stream's
next result and to `on_event` callbacks). No result is computed from state the server lost.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, Optional, Union

import numpy as np

from .._optional import require
from ..bundle import ScoreSpec
from ..errors import ConfigError, VadedgeError
from ..preprocess import InputSpec, prepare_frame
from ..runtime.results import Event, FrameResult
from ..scoring import ScoreRecipe
from .triton_backend import FLAG_ANOMALY, FLAG_WARMUP, IN_FRAME, IN_TIMESTAMP

logger = logging.getLogger(__name__)
RESTART_REASON = "server_restart"


class RemoteError(VadedgeError):
    """The server could not be reached again (after `reconnect_timeout`) or kept failing requests."""


def edge_frame(frame: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """Resize (and gray-convert) a BGR / gray uint8 frame on the camera side, as prepare_frame does."""
    return prepare_frame(frame, InputSpec(height, width, "gray" if channels == 1 else "bgr"))


@dataclass
class _Pending:
    stream: RemoteStream
    frame: np.ndarray
    timestamp: float
    index: int  # the client's frame index of this stream
    future: Future
    sent_at: float = 0.0  # perf_counter at submit: FrameResult.latency_ms is the round trip


class RemoteStream:
    """One camera of a RemoteDetector: a Triton sequence (correlation id) and its client-side view."""

    def __init__(self, det: RemoteDetector, name: str) -> None:
        self.name = name
        self._det = det
        self.corrid = 0
        self.frame_index = -1  # last frame submitted
        self.restarts = 0  # how many times the server lost this stream's state
        self.sequence_start = 0  # client frame index of the current sequence's first frame
        self._sent = 0  # frames sent in the current sequence
        self._event_base = 0  # client event id of the server's event 0 in this sequence
        self._max_event = -1
        self.open_event: Optional[Event] = None
        self._restart_event: Optional[Event] = None  # to report on the next result
        self._last: tuple[int, float] = (-1, 0.0)
        self.pending: deque[_Pending] = deque()
        self._new_sequence()

    def _new_sequence(self) -> None:
        self.corrid = secrets.randbits(62) + 1
        self._sent = 0
        self.sequence_start = self.pending[0].index if self.pending else self.frame_index + 1
        self._event_base += self._max_event + 1
        self._max_event = -1

    def submit(self, frame: np.ndarray, timestamp: Optional[float] = None) -> Future:
        """Send one frame; the Future resolves to its FrameResult (results of a stream come in order)."""
        return self._det._submit(self, frame, timestamp)

    def process(self, frame: np.ndarray, timestamp: Optional[float] = None) -> FrameResult:
        return self._det._wait(self.submit(frame, timestamp))

    def finish(self, reason: str = "stream_end") -> Optional[Event]:
        """Close (and report) an open event; the sequence (server state) stays, as a local stream's
        does. `RemoteDetector.remove_stream` / `close` end the sequence on the server."""
        for p in list(self.pending):
            self._det._wait(p.future)
        with self._det._lock:
            ev = self._close_open(reason)
        if ev is not None:
            self._det._emit(ev)
        return ev

    def _close_open(self, reason: str) -> Optional[Event]:
        ev = self.open_event
        if ev is None:
            return None
        self.open_event = None
        return replace(ev, end_frame=self._last[0], end_time=self._last[1], reason=reason)

    def _event(self, d: Optional[dict]) -> Optional[Event]:
        if d is None:
            return None
        d = {k: v for k, v in d.items() if k != "frames"}
        self._max_event = max(self._max_event, int(d["id"]))
        off = self.sequence_start
        d.update(
            stream=self.name,
            id=self._event_base + int(d["id"]),
            start_frame=d["start_frame"] + off,
            peak_frame=d["peak_frame"] + off,
        )
        if d.get("end_frame") is not None:
            d["end_frame"] += off
        return Event(**d)

    def __repr__(self) -> str:
        return f"RemoteStream({self.name!r}, corrid={self.corrid}, frames={self.frame_index + 1})"


class RemoteDetector:
    """Streams frames to a Triton model written by `vadedge triton-repo`; see the module docstring."""

    def __init__(
        self,
        url: str,
        model: str = "vadedge",
        *,
        max_in_flight: int = 8,
        reconnect_timeout: float = 60.0,
        request_timeout: float = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self._grpc = require("tritonclient.grpc")
        self.address = _grpc_address(url)
        self.model = model
        self.max_in_flight = max_in_flight
        self.reconnect_timeout = reconnect_timeout
        self.request_timeout = request_timeout
        self._lock = threading.RLock()
        self._streams: dict[str, RemoteStream] = {}
        self._callbacks: list[tuple[Callable[[Event], Any], str]] = []
        self._inflight: dict[str, _Pending] = {}
        self._ending: set[int] = set()  # correlation ids whose END was sent, until it is answered
        self._next_id = 0
        self._gen = 0  # connection generation: responses of an older connection are ignored
        self._broken: Optional[BaseException] = None
        self._failures = 0  # recoveries since the last result
        self.max_failures = 5
        self.reconnects = 0
        self._client: Any = None
        self._connect(deadline=time.monotonic() + connect_timeout)  # first connection: fail fast
        client: Any = self._client
        cfg = client.get_model_config(model, as_json=True)["config"]
        frame_in = next(i for i in cfg["input"] if i["name"] == IN_FRAME)
        self.height, self.width, self.channels = (int(x) for x in frame_in["dims"])
        self.components = cfg["parameters"]["components"]["string_value"].split(",")
        info = json.loads(cfg["parameters"]["vadedge"]["string_value"])
        # the server's score recipe (threshold for drawing, calibration) and model rate, as Detector has them
        self.recipe = ScoreRecipe.from_manifest(ScoreSpec.from_dict(info["score"]))
        self.frame_rate = float(info["frame_rate"])
        self._describe = str(info["describe"])

    @classmethod
    def connect(cls, url: str, model: str = "vadedge", **kw: Any) -> RemoteDetector:
        return cls(url, model, **kw)

    # ------------------------------------------------------------------ streams / callbacks
    def stream(self, name: str = "default") -> RemoteStream:
        with self._lock:
            if name not in self._streams:
                self._streams[name] = RemoteStream(self, str(name))
            return self._streams[name]

    @property
    def streams(self) -> dict[str, RemoteStream]:
        return dict(self._streams)

    def on_event(self, callback: Callable[[Event], Any], when: str = "both") -> Callable[[Event], Any]:
        if when not in ("start", "end", "both"):
            raise ConfigError(f"when must be 'start', 'end' or 'both', got {when!r}")
        self._callbacks.append((callback, when))
        return callback

    def _emit(self, event: Event) -> None:
        kind = "start" if event.is_open else "end"
        for cb, when in self._callbacks:
            if when in ("both", kind):
                cb(event)

    def process(self, frame: np.ndarray, timestamp: Optional[float] = None) -> FrameResult:
        return self.stream("default").process(frame, timestamp)

    def describe(self) -> str:
        return f"{self._describe}, Triton model {self.model!r} at grpc://{self.address}"

    def process_many(
        self,
        frames: Mapping[Union[str, RemoteStream], np.ndarray],
        timestamps: Optional[Mapping[Union[str, RemoteStream], float]] = None,
    ) -> dict[str, FrameResult]:
        """One frame per stream, sent together (the server batches them); {stream name: result}."""
        ts = {(k.name if isinstance(k, RemoteStream) else str(k)): v for k, v in (timestamps or {}).items()}
        futs = {}
        for k, f in frames.items():
            h = k if isinstance(k, RemoteStream) else self.stream(str(k))
            futs[h.name] = h.submit(f, ts.get(h.name))
        return {name: self._wait(fut) for name, fut in futs.items()}

    def finish(self, reason: str = "stream_end") -> list[Event]:
        return [e for h in list(self._streams.values()) if (e := h.finish(reason)) is not None]

    def remove_stream(self, stream: Union[str, RemoteStream], reason: str = "stream_end") -> Optional[Event]:
        """Finish a stream and end its sequence: the server drops its state now (not after idling)."""
        h = stream if isinstance(stream, RemoteStream) else self._streams[str(stream)]
        ended = h.finish(reason)
        with self._lock:
            self._end_sequence(h)
            self._streams.pop(h.name, None)
        return ended

    def _end_sequence(self, h: RemoteStream) -> None:
        """Send END for `h`'s sequence (call with no frame of it pending): a placeholder frame with a
        NaN timestamp, which the model does not score (triton_backend); its answer is ignored."""
        if h._sent == 0 or self._client is None or self._broken is not None:
            return  # no sequence on the server (or a broken connection: the server lost it anyway)
        g = self._grpc
        frame = g.InferInput(IN_FRAME, [1, self.height, self.width, self.channels], "UINT8")
        frame.set_data_from_numpy(np.zeros((1, self.height, self.width, self.channels), np.uint8))
        ts = g.InferInput(IN_TIMESTAMP, [1, 1], "FP64")
        ts.set_data_from_numpy(np.array([[np.nan]], np.float64))
        self._ending.add(h.corrid)
        try:
            self._client.async_stream_infer(
                self.model,
                [frame, ts],
                request_id=f"{self._gen}:{h.corrid}:end",
                sequence_id=h.corrid,
                sequence_start=False,
                sequence_end=True,
            )
        except Exception as exc:  # noqa: BLE001 - the server will drop the sequence when it idles out
            logger.debug("ending sequence of %s: %s", h.name, exc)
        h._sent = 0  # a later frame would START a sequence again

    # ------------------------------------------------------------------ requests
    def _submit(self, h: RemoteStream, frame: np.ndarray, timestamp: Optional[float]) -> Future:
        small = edge_frame(frame, self.height, self.width, self.channels)  # DataError before anything changes
        while len(h.pending) >= self.max_in_flight:
            self._wait(h.pending[0].future)
        with self._lock:
            h.frame_index += 1
            p = _Pending(
                h,
                small,
                time.time() if timestamp is None else float(timestamp),
                h.frame_index,
                Future(),
                time.perf_counter(),
            )
            h.pending.append(p)
            if self._broken is None:
                self._send(p)
        return p.future

    def _send(self, p: _Pending) -> None:
        g = self._grpc
        h = p.stream
        frame = g.InferInput(IN_FRAME, [1, *p.frame.shape], "UINT8")
        frame.set_data_from_numpy(p.frame[None])
        ts = g.InferInput(IN_TIMESTAMP, [1, 1], "FP64")
        ts.set_data_from_numpy(np.array([[p.timestamp]], np.float64))
        self._next_id += 1
        rid = f"{self._gen}:{self._next_id}"
        self._inflight[rid] = p
        try:
            self._client.async_stream_infer(
                self.model,
                [frame, ts],
                request_id=rid,
                sequence_id=h.corrid,
                sequence_start=h._sent == 0,
                sequence_end=False,
            )
            h._sent += 1
        except Exception as exc:  # noqa: BLE001 - any failure to send means: reconnect and resend
            self._inflight.pop(rid, None)
            self._broken = exc

    def _on_response(self, gen: int, result: Any, error: Any) -> None:
        with self._lock:
            if gen != self._gen:
                return
            if error is not None:
                if any(str(c) in str(error) for c in self._ending):  # a sequence we end, e.g. already idle
                    logger.debug("ending a sequence: %s", error)
                    return
                logger.warning("Triton stream error (%s): will reconnect", error)
                self._broken = error
                return
            rid = result.get_response().id
            if rid.endswith(":end"):
                self._ending.discard(int(rid.split(":")[-2]))
            p = self._inflight.pop(rid, None)
            if p is None:
                return
            h = p.stream
            if not h.pending or h.pending[0] is not p:
                self._broken = RemoteError(f"stream {h.name!r}: result out of order")
                return
            h.pending.popleft()
            self._failures = 0
            try:
                res, events = self._decode(h, p, result)
            except Exception as exc:  # noqa: BLE001 - a malformed answer fails this frame, loudly
                p.future.set_exception(RemoteError(f"stream {h.name!r} frame {p.index}: bad answer: {exc}"))
                return
        for ev in events:
            self._emit(ev)
        p.future.set_result(res)

    def _decode(self, h: RemoteStream, p: _Pending, result: Any) -> tuple[FrameResult, list[Event]]:
        """The FrameResult (client frame / event numbering) and the server's events to report."""
        flags = int(result.as_numpy("FLAGS").reshape(-1)[0])
        warm = bool(flags & FLAG_WARMUP)
        comps = result.as_numpy("COMPONENTS").reshape(-1)
        events = json.loads(result.as_numpy("EVENTS").reshape(-1)[0])
        started, ended = h._event(events["started"]), h._event(events["ended"])
        fresh = [e for e in (ended, started) if e is not None]
        if ended is not None:
            h.open_event = None
        if started is not None:
            h.open_event = started
        if h._restart_event is not None and ended is None:
            ended, h._restart_event = h._restart_event, None
        h._last = (p.index, p.timestamp)
        score = None if warm else float(result.as_numpy("SCORE").reshape(-1)[0])
        raw = None if warm else float(result.as_numpy("RAW_SCORE").reshape(-1)[0])
        res = FrameResult(
            h.name,
            p.index,
            p.timestamp,
            score=score,
            raw_score=raw,
            components={} if warm else {c: float(v) for c, v in zip(self.components, comps)},
            is_anomaly=bool(flags & FLAG_ANOMALY),
            warmup=warm,
            event_started=started,
            event_ended=ended,
            latency_ms=(time.perf_counter() - p.sent_at) * 1e3,
        )
        return res, fresh

    def _wait(self, fut: Future) -> FrameResult:
        deadline = time.monotonic() + self.request_timeout
        while True:
            try:
                res: FrameResult = fut.result(timeout=0.05)
                return res
            except FutureTimeout:
                pass
            if self._broken is not None:
                self._recover()
                deadline = time.monotonic() + self.request_timeout
            elif time.monotonic() > deadline:
                raise RemoteError(f"no result from {self.address} within {self.request_timeout:.0f} s")

    # ------------------------------------------------------------------ connection
    def _connect(self, deadline: float) -> None:
        g = self._grpc
        delay = 0.1
        while True:
            try:
                client = g.InferenceServerClient(self.address)
                if client.is_server_ready() and client.is_model_ready(self.model):
                    client.start_stream(callback=functools.partial(self._on_response, self._gen))
                    self._client = client
                    return
                client.close()
            except Exception as exc:  # noqa: BLE001 - unreachable server: retry until the deadline
                logger.debug("connect %s: %s", self.address, exc)
            if time.monotonic() + delay > deadline:
                raise RemoteError(f"Triton at {self.address} (model {self.model!r}) not reachable")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _recover(self) -> None:
        """Reconnect, start a new sequence for every stream and resend the frames without a result."""
        with self._lock:
            if self._broken is None:
                return
            logger.warning("lost the Triton stream (%s); reconnecting", self._broken)
            self._gen += 1
            old, self._client = self._client, None
            self._inflight.clear()
        if old is not None:
            try:
                old.stop_stream(cancel_requests=True)
                old.close()
            except Exception:  # noqa: BLE001 - the old connection is gone anyway
                logger.debug("closing the old Triton client", exc_info=True)
        with self._lock:
            self._failures += 1
            if self._failures > self.max_failures:  # the server is up but keeps failing these frames
                err, self._broken = self._broken, None
                for h in self._streams.values():
                    while h.pending:
                        h.pending.popleft().future.set_exception(RemoteError(f"Triton keeps failing: {err}"))
            self._connect(deadline=time.monotonic() + self.reconnect_timeout)
            self.reconnects += 1
            self._broken = None
            closed = []
            for h in self._streams.values():
                h.restarts += 1
                ev = h._close_open(RESTART_REASON)
                if ev is not None:
                    h._restart_event = ev
                    closed.append(ev)
                h._new_sequence()
                for p in h.pending:
                    self._send(p)
        for ev in closed:
            self._emit(ev)

    def close(self) -> None:
        """End every stream's sequence on the server (waiting for their results first) and disconnect."""
        for h in list(self._streams.values()):
            try:
                for p in list(h.pending):
                    self._wait(p.future)
            except Exception as exc:  # noqa: BLE001 - closing: a lost result is reported by its own future
                logger.debug("closing %s: %s", h.name, exc)
        with self._lock:
            for h in self._streams.values():
                if not h.pending:
                    self._end_sequence(h)
            client, self._client = self._client, None
            self._gen += 1
        if client is not None:
            try:
                client.stop_stream()
            finally:
                client.close()

    def __enter__(self) -> RemoteDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _grpc_address(url: str) -> str:
    """ "grpc://host:port" or "host:port" -> "host:port" (only gRPC: streaming keeps sequences in order)."""
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme != "grpc":
            raise ConfigError(f"server URL must be grpc://host:port, got {url!r}")
        url = rest
    if ":" not in url:
        raise ConfigError(f"server URL needs a port (grpc://host:8001), got {url!r}")
    return url.rstrip("/")
