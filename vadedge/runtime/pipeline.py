"""The run loop behind `vadedge run` / `vadedge demo`: source → detector → sinks, with clean stops.

Ctrl-C (SIGINT), SIGTERM or SIGHUP asks the loop to stop after the current frame; open events are
then closed (reason "interrupted") and written, the CSV and video are finalised, and the summary is
returned with `interrupted=True` and the signal, so the CLI exits 128 + signal number (130, 143,
129). A second signal aborts immediately. Every event record is fsynced when it is reported, so
nothing reported is lost even on a hard kill. A live source that stops delivering frames for
`source_lost_after` seconds (it is reconnecting) closes an open event with reason "source_lost".
A sink that fails (disk full) stops the run with a DataError after every sink was closed.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TextIO

from ..errors import CallbackError, VadedgeError
from .detector import Detector
from .results import Event, FrameResult
from .sinks import AnnotatedVideo, EventLog, ScoreCSV, Window
from .sources import Source

logger = logging.getLogger(__name__)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
SOURCE_LOST_AFTER = 5.0  # seconds without frames from a live source before an open event is closed


@dataclass
class RunSummary:
    """What one run did; `events` are the closed events in the order they ended."""

    source: str
    frames: int = 0
    scored: int = 0
    events: list[Event] = field(default_factory=list)
    dropped: int = 0
    skipped: int = 0  # frames the sampler left out (a source faster than the model's frame rate)
    reconnects: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    signal: Optional[int] = None  # the signal that stopped the run (None: Ctrl-C as KeyboardInterrupt / none)
    outputs: dict[str, str] = field(default_factory=dict)
    max_score: Optional[float] = None

    @property
    def exit_code(self) -> int:
        """0 for a run that ended by itself, 128 + signal number for a stopped one (Ctrl-C: 130)."""
        if not self.interrupted:
            return 0
        return 128 + (self.signal or signal.SIGINT)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"{'interrupted after' if self.interrupted else 'processed'} {self.frames} frames "
            f"({self.scored} scored) of {self.source} in {self.seconds:.1f} s, {self.fps:.1f} frames/s"
        ]
        if self.skipped:
            lines.append(f"sampling: {self.skipped} frames skipped to keep the model's frame rate")
        if self.dropped or self.reconnects:
            lines.append(f"live source: {self.dropped} frames dropped, {self.reconnects} reconnects")
        lines.append(
            f"events: {len(self.events)}"
            + "".join(
                f"\n  #{e.id}: frames {e.start_frame}-{e.end_frame} (t {e.start_time:.2f}-{e.end_time:.2f} s), "
                f"peak {e.peak_score:.2f} at frame {e.peak_frame}"
                for e in self.events
            )
        )
        for kind, path in self.outputs.items():
            lines.append(f"{kind}: {path}")
        return "\n".join(lines)


class _Status:
    """A progress bar (known length) or a live status line on a terminal; silent otherwise."""

    def __init__(self, total: Optional[int], live: bool, out: TextIO, enabled: bool) -> None:
        self.total, self.live, self.out = total, live, out
        self.verbose = enabled  # event messages (any stream); the bar / status line only on a terminal
        self.enabled = enabled and hasattr(out, "isatty") and out.isatty()
        self._last = 0.0
        self._t0 = time.perf_counter()

    def update(self, n: int, r: FrameResult, src: Source, events: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < 0.2):
            return
        self._last = now
        fps = n / max(now - self._t0, 1e-9)
        score = "warm-up" if r.score is None else f"score {r.score:+6.2f}{' ANOMALY' if r.is_anomaly else ''}"
        if self.total and not self.live:
            frac = min(n / self.total, 1.0)
            bar = "#" * int(frac * 24)
            line = f"[{bar:<24}] {n}/{self.total} {fps:5.1f} fps  {score}  events {events}"
        else:
            line = (
                f"{src.name}: {n} frames {fps:5.1f} fps  dropped {src.dropped}  reconnects {src.reconnects}  "
                f"{score}  events {events}"
            )
        self.out.write("\r" + line[:150].ljust(100))
        self.out.flush()

    def message(self, text: str) -> None:
        if not self.verbose:
            return
        if self.enabled:
            self.out.write("\r" + " " * 100 + "\r")
        self.out.write(text + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\n")
            self.out.flush()


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT / SIGTERM / SIGHUP) arrived while opening a source or loading a model."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _SignalScope:
    """Installs `self._handler` for STOP_SIGNALS on enter (main thread only), restores on exit."""

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: Any) -> None:
        raise NotImplementedError

    def __enter__(self):  # noqa: ANN204 - returns the subclass instance
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class interruptible(_SignalScope):
    """Context: SIGINT / SIGTERM / SIGHUP raise `Interrupted(signum)`, so a slow open or model load
    can be abandoned with the right exit code; previous handlers come back after."""

    def _handler(self, signum: int, _frame: Any) -> None:
        raise Interrupted(signum)


class _StopRequest(_SignalScope):
    """SIGINT / SIGTERM / SIGHUP → stop flag (first time) or KeyboardInterrupt (second time)."""

    def __init__(self, on_stop: Callable[[], None]) -> None:
        super().__init__()
        self.requested = False
        self.signum: Optional[int] = None
        self._on_stop = on_stop

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        self._on_stop()


def _close_all(sinks: Sequence[Any]) -> Optional[BaseException]:
    """Close every sink even when one fails; returns the first failure (None if all closed)."""
    first: Optional[BaseException] = None
    for sink in sinks:
        if sink is None:
            continue
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - reported after the others were closed
            logger.error("closing %s failed: %s", type(sink).__name__, exc)
            first = first or exc
    return first


def run_source(
    detector: Detector,
    source: Source,
    *,
    stream: Optional[str] = None,
    events: Optional[str | Path] = None,
    scores: Optional[str | Path] = None,
    video: Optional[str | Path] = None,
    show: bool = False,
    max_frames: Optional[int] = None,
    progress: bool = True,
    status_out: Optional[TextIO] = None,
    on_result: Optional[Callable[[Any, FrameResult], None]] = None,
    source_lost_after: float = SOURCE_LOST_AFTER,
    feed: Any = None,
    metrics: Any = None,
) -> RunSummary:
    """Run `source` through `detector` as one stream, writing the requested sinks; see module doc.

    feed (a `vadedge.delivery.EventFeed`) receives the events and frames for new / update / end
    messages and is closed with the other sinks; metrics (a `vadedge.delivery.metrics.Metrics`)
    counts frames, latency, drops and reconnects under the stream's name.

    Raises DataError (after closing every sink and the source) when a sink cannot be written.
    """
    handle = detector.stream(stream or "default")
    if metrics is not None:
        metrics.camera(handle.name)
    summary = RunSummary(source.name)
    status = _Status(
        source.total if max_frames is None else min(source.total or max_frames, max_frames),
        source.live,
        status_out or sys.stderr,
        progress,
    )  # stderr now, not at import
    opened: list[Any] = []
    try:
        log = EventLog(events, identify=feed.describe if feed is not None else None) if events else None
        opened.append(log)
        csvw = (
            ScoreCSV(scores, [c for c, _ in detector.backend.io.scores] + list(detector.bundle.manifest.score.local))
            if scores
            else None
        )
        opened.append(csvw)
        vid = AnnotatedVideo(video, fps=source.output_fps or 25.0, threshold=detector.recipe.on) if video else None
        opened.append(vid)
        win = Window() if show else None
        opened.append(win)
    except BaseException:
        _close_all(opened)
        source.close()
        raise
    viewer = vid or (AnnotatedVideo("unused.mp4", threshold=detector.recipe.on) if show else None)
    for kind, path in (("events", events), ("scores", scores), ("video", video)):
        if path:
            summary.outputs[kind] = str(path)

    def on_event(e: Event) -> None:
        try:
            if feed is not None:
                feed.event(e)  # first: the log takes the event's id from the feed
        finally:  # a failing sink does not keep the event out of the log
            if log is not None:
                log.write(e)
        if e.is_open:
            status.message(f"event #{e.id} started at frame {e.start_frame} (t {e.start_time:.2f} s)")
        else:
            summary.events.append(e)
            status.message(
                f"event #{e.id} ended at frame {e.end_frame}: {e.frames} frames, peak {e.peak_score:.2f} ({e.reason})"
            )

    detector.on_event(on_event)
    t0 = time.perf_counter()
    r: Optional[FrameResult] = None
    failure: Optional[BaseException] = None
    try:
        with _StopRequest(source.request_stop) as stop:
            try:
                last_frame, lost = time.monotonic(), False
                for f in source.poll():
                    if f is None:  # no frame for a while: a live source may be down
                        if source.live and not lost and time.monotonic() - last_frame >= source_lost_after:
                            lost = True
                            if metrics is not None:
                                metrics.camera_down(handle.name)
                            handle.finish("source_lost")
                        if stop.requested:
                            break
                        continue
                    last_frame, lost = time.monotonic(), False
                    r = handle.process(f.image, f.timestamp)
                    summary.frames += 1
                    if r.score is not None:
                        summary.scored += 1
                        summary.max_score = r.score if summary.max_score is None else max(summary.max_score, r.score)
                    if feed is not None:
                        feed.frame(handle.name, r.frame_index, r.timestamp, r.score, r.heatmap, f.image.shape, f.image)
                    if metrics is not None:
                        metrics.frame(handle.name, r.score is not None, r.latency_ms)
                        metrics.source(handle.name, source.dropped, source.reconnects, source.queue_depth)
                    if csvw is not None:
                        csvw.write(r)
                    if viewer is not None:
                        canvas = vid.write(f.image, r) if vid is not None else viewer.render(f.image, r)
                        if win is not None and not win.show(canvas):
                            break  # q / Esc in the window: a normal stop
                    if on_result is not None:
                        on_result(f, r)
                    status.update(summary.frames, r, source, len(summary.events))
                    if stop.requested or (max_frames is not None and summary.frames >= max_frames):
                        break
            except KeyboardInterrupt:
                stop.requested = True
            summary.interrupted = stop.requested
            summary.signal = stop.signum
    except BaseException as exc:
        failure = _unwrap(exc)
    try:
        detector.finish("interrupted" if summary.interrupted else "stream_end")
    except BaseException as exc:
        failure = failure or _unwrap(exc)
    summary.seconds = time.perf_counter() - t0
    summary.dropped, summary.reconnects, summary.skipped = source.dropped, source.reconnects, source.skipped
    if r is not None:
        status.update(summary.frames, r, source, len(summary.events), force=True)
    status.done()
    closing = _close_all([log, feed, csvw, vid, win])
    source.close()
    detector._callbacks = [(cb, w) for cb, w in detector._callbacks if cb is not on_event]
    failure = failure or closing
    if failure is not None:
        raise failure
    return summary


def _unwrap(exc: BaseException) -> BaseException:
    """A sink error raised inside an event callback: report the sink's own error."""
    if isinstance(exc, CallbackError) and isinstance(exc.errors[0][1], VadedgeError):
        return exc.errors[0][1]
    return exc
