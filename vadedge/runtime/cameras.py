"""Several cameras in one process: `run_cameras(config)` behind `vadedge run --config cameras.yaml`.

Each camera's source decodes in its own thread (`vadedge.runtime.sources`). Cameras whose model
settings are the same (bundle, backend, device, precision, threshold, smoothing, mask, ...) share
one `Detector` with one stream per camera, so their frames go through batched inference calls
(`Detector.process_many`); each stream keeps its own frame buffer, graph state and scorer, so a
camera scores exactly as it would alone. Events carry the camera name (the stream name) to the
event feed, the per-camera event log and the metrics.

A live camera (a device or a URL) that cannot be opened at start-up, or that fails for good
later, is retried in the background with capped exponential backoff while the others run; its
`vadedge_camera_up` gauge stays 0 until it delivers. Only a bad config or an unreadable file is an
error at start. Ctrl-C / SIGTERM / SIGHUP stop every camera cleanly (open events end with reason
"interrupted"), like the single-camera loop (`vadedge.runtime.pipeline`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import DataError
from .pipeline import RunSummary, _close_all, _StopRequest, _unwrap
from .results import Event
from .sinks import AnnotatedVideo, EventLog, ScoreCSV, Window, check_outputs
from .sources import Source, open_source

logger = logging.getLogger(__name__)
POLL_IDLE = 0.02  # seconds one camera's poll waits for a frame before the loop moves on


@dataclass
class MultiSummary:
    """Per-camera summaries of one multi-camera run, in config order."""

    cameras: dict[str, RunSummary] = field(default_factory=dict)
    models: list[tuple[str, list[str]]] = field(default_factory=list)  # (model, cameras sharing it)
    interrupted: bool = False
    signal: Optional[int] = None

    @property
    def exit_code(self) -> int:
        return 0 if not self.interrupted else 128 + (self.signal or 2)

    def format(self) -> str:
        lines = [f"model {i}: {desc} — cameras {', '.join(names)}" for i, (desc, names) in enumerate(self.models)]
        lines += [f"[{name}] " + s.format().replace("\n", f"\n[{name}] ") for name, s in self.cameras.items()]
        return "\n".join(lines)


class _Opener:
    """Opens a live source in a background thread, retrying with backoff until it opens or stops."""

    def __init__(self, cam: Any, backoff_initial: float = 1.0, backoff_max: float = 30.0) -> None:
        from ..delivery.base import Backoff

        self.cam = cam
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.source: Optional[Source] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"vadedge-open-{cam.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                src = open_source(self.cam.source, fps=self.cam.fps, max_reconnects=self.cam.max_reconnects)
            except DataError as exc:
                delay = self.backoff.delay(attempt)
                logger.warning("camera %s unavailable (%s); retrying in %.1f s", self.cam.name, exc, delay)
                attempt += 1
                self._stop.wait(delay)
                continue
            if self._stop.is_set():
                src.close()
            else:
                self.source = src
            return

    def take(self) -> Optional[Source]:
        src, self.source = self.source, None
        return src

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        if self.source is not None:
            self.source.close()


class _Camera:
    """One camera of the run: its config, detector stream, source and outputs."""

    def __init__(self, cfg: Any, det: Any) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.det = det
        self.handle = det.stream(cfg.name)
        self.summary = RunSummary(cfg.source)
        for kind, path in (("events", cfg.events), ("scores", cfg.scores), ("video", cfg.save_video)):
            if path:
                self.summary.outputs[kind] = str(path)
        self.source: Optional[Source] = None
        self.frames: Optional[Iterator] = None
        self.opener: Optional[_Opener] = None
        self.log: Optional[EventLog] = None
        self.csv: Optional[ScoreCSV] = None
        self.video: Optional[AnnotatedVideo] = None  # save_video / show: single-camera runs only
        self.window: Optional[Window] = None
        self.viewer: Optional[AnnotatedVideo] = None
        self.done = False
        self.last_frame = time.monotonic()
        self.lost = False
        self.reconnects = 0  # reconnects of sources this camera had before the current one

    def attach(self, src: Source) -> None:
        src.sample_at(None if self.cfg.all_frames else self.cfg.sample_fps or self.det.frame_rate)
        self.source, self.frames = src, src.poll(POLL_IDLE)
        self.summary.source = src.name
        self.last_frame, self.lost = time.monotonic(), False

    def detach(self) -> None:
        if self.source is not None:
            s = self.source
            self.summary.dropped += s.dropped
            self.summary.skipped += s.skipped
            self.reconnects += s.reconnects
            self.summary.reconnects = self.reconnects
            s.close()
        self.source, self.frames = None, None


def _detector_key(cam: Any) -> str:
    """Cameras with equal keys can share one Detector (one batched inference call per step)."""
    return json.dumps(
        cam.model_dump(
            include={
                "bundle",
                "server",
                "backend",
                "device",
                "precision",
                "engine",
                "plugins",
                "threads",
                "threshold",
                "smoothing",
                "min_event_frames",
                "adapt_k",
                "heatmap",
                "mask",
            },
            mode="json",
        ),
        sort_keys=True,
    )


def _describe(det: Any) -> str:
    try:
        return str(det.describe())
    except Exception:  # noqa: BLE001 - a description is not worth failing a run
        return type(det).__name__


def _load_detector(cam: Any) -> Any:
    from .detector import Detector

    if cam.server is not None:
        return Detector.connect(cam.server, model=cam.bundle or "vadedge")
    return Detector.load(
        cam.bundle,
        backend=cam.backend,
        device=cam.device,
        precision=cam.precision,
        threshold=cam.thresholds(),
        smoothing=cam.smoothing,
        min_event_frames=cam.min_event_frames,
        heatmap=cam.heatmap,
        threads=cam.threads,
        plugin_libraries=list(cam.plugins),
        engine=cam.engine,
        adapt_k=cam.adapt_k,
        mask=cam.mask_spec(),
    )


def run_cameras(
    config: Any, *, feed: Any = None, metrics: Any = None, retry_initial: float = 1.0, retry_max: float = 30.0
) -> MultiSummary:
    """Run every enabled camera of `config` (a `vadedge.runconfig.RunConfig`) until all ended or a
    stop signal; see the module doc. feed / metrics: an EventFeed and Metrics (closed here).

    Raises ConfigError / DataError before anything runs for a bundle that cannot be loaded, an
    output that cannot be written or a file source that cannot be read.
    """
    cams: list[_Camera] = []
    detectors: dict[str, Any] = {}
    opened: list[Any] = []
    try:
        for c in config.enabled:
            check_outputs(
                {"events": c.events, "scores": c.scores, "video": c.save_video},
                inputs=[None if c.live else c.source, None if c.server else c.bundle, c.engine, *c.plugins],
            )
            key = _detector_key(c)
            if key not in detectors:
                detectors[key] = _load_detector(c)
            cams.append(_Camera(c, detectors[key]))
        for cam in cams:
            try:
                cam.attach(open_source(cam.cfg.source, fps=cam.cfg.fps, max_reconnects=cam.cfg.max_reconnects))
            except DataError as exc:
                if not cam.cfg.live:
                    raise
                logger.warning("camera %s is down at start-up (%s); retrying in the background", cam.name, exc)
                cam.opener = _Opener(cam.cfg, retry_initial, retry_max)
            if cam.cfg.events:
                cam.log = EventLog(cam.cfg.events, identify=feed.describe if feed is not None else None)
                opened.append(cam.log)
            if cam.cfg.scores:
                det = cam.det
                cam.csv = ScoreCSV(
                    cam.cfg.scores, [c for c, _ in det.backend.io.scores] + list(det.bundle.manifest.score.local)
                )
                opened.append(cam.csv)
            if cam.cfg.save_video:
                fps = cam.source.output_fps if cam.source is not None else None
                cam.video = AnnotatedVideo(cam.cfg.save_video, fps=fps or 25.0, threshold=cam.det.recipe.on)
                opened.append(cam.video)
            if cam.cfg.show:
                cam.window = Window()
                opened.append(cam.window)
            cam.viewer = cam.video or (
                AnnotatedVideo("unused.mp4", threshold=cam.det.recipe.on) if cam.cfg.show else None
            )
            if metrics is not None:
                metrics.camera(cam.name)
    except BaseException:
        _shutdown(cams, detectors, [*opened, feed, metrics])
        raise
    by_name = {c.name: c for c in cams}

    def on_event(e: Event) -> None:
        cam = by_name.get(e.stream)
        if cam is None:
            return
        try:
            if feed is not None:
                feed.event(e)  # first: the log takes the event's id from the feed
        finally:  # a failing sink does not keep the event out of the log
            if cam.log is not None:
                cam.log.write(e)
        if e.is_open:
            logger.info("%s: event #%d started at frame %d", cam.name, e.id, e.start_frame)
        else:
            cam.summary.events.append(e)
            logger.info("%s: event #%d ended at frame %s (%s)", cam.name, e.id, e.end_frame, e.reason)

    for det in detectors.values():
        det.on_event(on_event)
    summary = MultiSummary(
        {c.name: c.summary for c in cams},
        [(_describe(det), [c.name for c in cams if c.det is det]) for det in detectors.values()],
    )
    t0 = time.perf_counter()
    failure: Optional[BaseException] = None

    def stop_all() -> None:
        for c in cams:
            if c.source is not None:
                c.source.request_stop()

    try:
        with _StopRequest(stop_all) as stop:
            try:
                _loop(cams, detectors, stop, feed, metrics, retry_initial, retry_max)
            except KeyboardInterrupt:
                stop.requested = True
            summary.interrupted, summary.signal = stop.requested, stop.signum
    except BaseException as exc:
        failure = _unwrap(exc)
    reason = "interrupted" if summary.interrupted else "stream_end"
    for cam in cams:
        if not cam.done:
            try:
                cam.handle.finish(reason)
            except BaseException as exc:
                failure = failure or _unwrap(exc)
    seconds = time.perf_counter() - t0
    for cam in cams:
        cam.summary.seconds = seconds
    closing = _shutdown(cams, detectors, [*opened, feed, metrics])
    failure = failure or closing
    if failure is not None:
        raise failure
    return summary


def _loop(
    cams: list[_Camera],
    detectors: dict[str, Any],
    stop: Any,
    feed: Any,
    metrics: Any,
    retry_initial: float,
    retry_max: float,
) -> None:
    groups = [(det, [c for c in cams if c.det is det]) for det in detectors.values()]
    while not stop.requested and not all(c.done for c in cams):
        active = False
        for cam in cams:
            if cam.opener is not None and not cam.done:
                src = cam.opener.take()
                if src is not None:
                    cam.opener.stop()
                    cam.opener = None
                    logger.warning("camera %s is up", cam.name)
                    cam.attach(src)
        for det, group in groups:
            frames: dict[Any, Any] = {}
            stamps: dict[Any, float] = {}
            images: dict[str, Any] = {}
            for cam in group:
                if cam.done or cam.frames is None:
                    continue
                active = True
                try:
                    f: Any = next(cam.frames, StopIteration)
                except DataError as exc:  # a live source that gave up reconnecting
                    if not cam.cfg.live:
                        raise
                    logger.error("camera %s lost (%s); reopening in the background", cam.name, exc)
                    _camera_lost(cam, metrics)
                    cam.detach()
                    cam.opener = _Opener(cam.cfg, retry_initial, retry_max)
                    continue
                if f is StopIteration:
                    cam.handle.finish("interrupted" if stop.requested else "stream_end")
                    cam.done = True
                    cam.detach()
                    continue
                if f is None:
                    if (
                        cam.source is not None
                        and cam.source.live
                        and not cam.lost
                        and time.monotonic() - cam.last_frame >= cam.cfg.source_lost_after
                    ):
                        _camera_lost(cam, metrics)
                    continue
                cam.last_frame, cam.lost = time.monotonic(), False
                frames[cam.handle] = f.image
                stamps[cam.handle] = f.timestamp
                images[cam.name] = f.image
            if frames:
                results = det.process_many(frames, stamps)
                for cam in group:
                    r = results.get(cam.name)
                    if r is not None:
                        _record(cam, r, images[cam.name], feed, metrics)
        if not active:
            time.sleep(0.05)  # only cameras waiting to open: do not spin


def _camera_lost(cam: _Camera, metrics: Any) -> None:
    cam.lost = True
    if metrics is not None:
        metrics.camera_down(cam.name)
    cam.handle.finish("source_lost")


def _record(cam: _Camera, r: Any, image: Any, feed: Any, metrics: Any) -> None:
    s = cam.summary
    s.frames += 1
    if r.score is not None:
        s.scored += 1
        s.max_score = r.score if s.max_score is None else max(s.max_score, r.score)
    if feed is not None:
        feed.frame(cam.name, r.frame_index, r.timestamp, r.score, r.heatmap, image.shape, image)
    if metrics is not None:
        metrics.frame(cam.name, r.score is not None, r.latency_ms)
        if cam.source is not None:
            metrics.source(
                cam.name,
                s.dropped + cam.source.dropped,
                cam.reconnects + cam.source.reconnects,
                cam.source.queue_depth,
            )
    if cam.csv is not None:
        cam.csv.write(r)
    closed = False
    if cam.viewer is not None:
        canvas = cam.video.write(image, r) if cam.video is not None else cam.viewer.render(image, r)
        closed = cam.window is not None and not cam.window.show(canvas)  # q / Esc: a normal stop
    if closed or (cam.cfg.max_frames is not None and s.frames >= cam.cfg.max_frames):
        cam.handle.finish("stream_end")
        cam.done = True
        cam.detach()


def _shutdown(cams: list[_Camera], detectors: dict[str, Any], sinks: list[Any]) -> Optional[BaseException]:
    for cam in cams:
        if cam.opener is not None:
            cam.opener.stop()
        cam.detach()
    failure = _close_all(sinks)
    for det in detectors.values():
        try:
            det.close()
        except Exception as exc:  # noqa: BLE001
            failure = failure or exc
    return failure


__all__ = ["MultiSummary", "run_cameras"]
