"""Prometheus metrics and /healthz on one small HTTP server (default 127.0.0.1:9108).

Metric names (all prefixed `vadedge_`): frames_total, frames_scored_total, frames_dropped_total,
reconnects_total and camera_up per camera; inference_latency_seconds (histogram) per camera;
events_total per camera and type (new / update / end); sink_delivery_failures_total and
spool_messages (undelivered, a gauge read at scrape time) per sink. `/healthz` answers 200 with a
JSON summary while every camera delivered a frame within `stale_after` seconds, else 503.
The registry is private to the `Metrics` object, so several can live in one process (tests).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from .._optional import require
from ..errors import ConfigError

logger = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def parse_address(text: str) -> tuple[str, int]:
    """'HOST:PORT' or 'PORT' -> (host, port); host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        raise ConfigError(f"metrics address must be [HOST:]PORT, got {text!r}") from None
    if not 0 <= p < 65536:
        raise ConfigError(f"metrics port must be 0..65535, got {p}")
    return (host.strip("[]") or "127.0.0.1"), p


class Metrics:
    """The counters of one process; `serve()` starts the HTTP endpoint in a daemon thread."""

    def __init__(self, stale_after: float = 30.0) -> None:
        pc = require("prometheus_client")
        self._pc = pc
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self.frames = pc.Counter("vadedge_frames", "Frames read from the camera", ["camera"], registry=r)
        self.scored = pc.Counter("vadedge_frames_scored", "Frames scored (after warm-up)", ["camera"], registry=r)
        self.dropped = pc.Counter("vadedge_frames_dropped", "Frames a live source dropped", ["camera"], registry=r)
        self.reconnects = pc.Counter("vadedge_reconnects", "Live source reconnects", ["camera"], registry=r)
        self.up = pc.Gauge("vadedge_camera_up", "1 while the camera delivers frames", ["camera"], registry=r)
        self.queued = pc.Gauge("vadedge_queue_depth", "Decoded frames waiting to be scored", ["camera"], registry=r)
        self.latency = pc.Histogram(
            "vadedge_inference_latency_seconds",
            "Inference latency per frame",
            ["camera"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.events = pc.Counter("vadedge_events", "Event messages", ["camera", "type"], registry=r)
        self.failures = pc.Counter("vadedge_sink_delivery_failures", "Failed delivery attempts", ["sink"], registry=r)
        self.spool = pc.Gauge("vadedge_spool_messages", "Messages waiting in a sink's spool", ["sink"], registry=r)
        self.stale_after = stale_after
        self._last_frame: dict[str, float] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # camera -> (dropped, reconnects) reported so far
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        self.address: Optional[tuple[str, int]] = None

    # ------------------------------------------------------------------ recording
    def camera(self, name: str) -> None:
        """Declare a camera (so its series exist, at 0 / down, before its first frame)."""
        for c in (self.frames, self.scored, self.dropped, self.reconnects):
            c.labels(name)
        self.up.labels(name).set(0)
        self.queued.labels(name).set(0)
        with self._lock:
            self._last_frame.setdefault(name, float("-inf"))

    def frame(self, camera: str, scored: bool, latency_ms: float) -> None:
        self.frames.labels(camera).inc()
        if scored:
            self.scored.labels(camera).inc()
        self.latency.labels(camera).observe(max(latency_ms, 0.0) / 1000.0)
        self.up.labels(camera).set(1)
        with self._lock:
            self._last_frame[camera] = time.monotonic()

    def source(self, camera: str, dropped: int, reconnects: int, queued: Optional[int] = None) -> None:
        """A source's running totals (the counters advance by the difference) and its queue depth now."""
        if queued is not None:
            self.queued.labels(camera).set(queued)
        with self._lock:
            d0, r0 = self._seen.get(camera, (0, 0))
            self._seen[camera] = (max(d0, dropped), max(r0, reconnects))
        if dropped > d0:
            self.dropped.labels(camera).inc(dropped - d0)
        if reconnects > r0:
            self.reconnects.labels(camera).inc(reconnects - r0)

    def camera_down(self, camera: str) -> None:
        self.up.labels(camera).set(0)

    def event(self, camera: str, kind: str) -> None:
        self.events.labels(camera, kind).inc()

    def failure(self, sink: str) -> None:
        self.failures.labels(sink).inc()

    def watch_spool(self, sink: str, pending: Callable[[], int]) -> None:
        """Report `pending()` as the sink's spool size at every scrape."""
        self.failures.labels(sink)
        self.spool.labels(sink).set_function(pending)

    # ------------------------------------------------------------------ serving
    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            ages = {c: (None if t == float("-inf") else round(now - t, 3)) for c, t in self._last_frame.items()}
        ok = bool(ages) and all(a is not None and a <= self.stale_after for a in ages.values())
        return ok, {"status": "ok" if ok else "unhealthy", "last_frame_age_s": ages}

    def serve(self, host: str = "127.0.0.1", port: int = 9108) -> tuple[str, int]:
        """Start serving /metrics and /healthz; returns the bound (host, port) (port 0 = any free)."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                if path == "/metrics":
                    body, ctype, code = (
                        metrics._pc.generate_latest(metrics.registry),
                        metrics._pc.CONTENT_TYPE_LATEST,
                        200,
                    )
                elif path == "/healthz":
                    ok, info = metrics.health()
                    body, ctype, code = json.dumps(info).encode(), "application/json", 200 if ok else 503
                else:
                    body, ctype, code = b"not found: try /metrics or /healthz\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                logger.debug("metrics: " + fmt, *args)

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        bound_host, bound_port = self._server.server_address[:2]
        address = (str(bound_host), int(bound_port))
        self.address = address
        threading.Thread(target=self._server.serve_forever, name="vadedge-metrics", daemon=True).start()
        logger.info("metrics on http://%s:%d/metrics", *address)
        return address

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
