"""Where results go: a durable JSON-lines event log, per-frame CSV scores, an annotated video, a window.

`EventLog` appends each event record (camera, persistent id) and fsyncs it before returning, so an
event that was reported is on disk even if the process is killed a moment later. The CSV is flushed every
`flush_every` rows and on close. A write that fails (disk full, I/O error) raises DataError once;
the sink then stops writing and `close()` releases the file without raising again, so the run
can close every other sink. `check_outputs` refuses, before anything is opened, an output that
is an input, two outputs that are one file, a folder or a path under a file, and a video
extension OpenCV cannot write. `AnnotatedVideo` draws the error map as a heatmap over the frame
and a strip with the recent score history (threshold line, anomalous stretches in red).
"""

from __future__ import annotations

import csv
import json
import math
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Optional, Union

import cv2
import numpy as np

from ..delivery.durable import append_record, cut_torn_tail
from ..errors import ConfigError, DataError
from .results import Event, FrameResult

VIDEO_SUFFIXES = (".mp4", ".avi")
PathLike = Union[str, Path]


def check_outputs(outputs: Mapping[str, Optional[PathLike]], inputs: Iterable[Optional[PathLike]] = ()) -> None:
    """Refuse output paths that would destroy an input or each other, before anything is opened.

    outputs: {what: path} (e.g. {"events": ..., "scores": ..., "video": ...}; None entries are
    skipped; the key "video" also checks the extension). inputs: files or folders that are read;
    an output may be none of them nor an existing file inside an input folder. Raises ConfigError.
    """
    given = {k: Path(v) for k, v in outputs.items() if v is not None and str(v) != ""}
    ins = [Path(p) for p in inputs if p is not None and str(p) != ""]
    seen: dict[str, str] = {}
    for what, path in given.items():
        if path.is_dir():
            raise ConfigError(f"--{what} {path} is a folder; give a file name")
        for parent in path.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(f"cannot write --{what} {path}: {parent} is a file, not a folder")
                break
        if what == "video" and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ConfigError(
                f"--save-video {path}: unsupported extension {path.suffix or '(none)'!r}; "
                f"use {' or '.join(VIDEO_SUFFIXES)}"
            )
        for src in ins:
            if _same_file(path, src) or (src.is_dir() and path.exists() and _is_under(path, src)):
                raise ConfigError(f"--{what} {path} would overwrite the input {src}")
        key = _identity(path)
        if key in seen:
            raise ConfigError(f"--{what} and --{seen[key]} are the same file ({path}); give each its own")
        seen[key] = what


def _identity(path: Path) -> str:
    if path.exists():
        st = path.stat()
        return f"{st.st_dev}:{st.st_ino}"
    return str(path.resolve())


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _is_under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _open_for_write(path: Path, what: str, mode: str = "w") -> IO:
    path = Path(path)
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return path.open(mode, newline="") if "b" not in mode else path.open(mode, buffering=0)
    except OSError as exc:
        raise DataError(f"cannot write {what} to {path}: {exc.strerror or exc}") from exc


class _TextSink:
    """An output file that turns the first OSError into one DataError and then goes quiet."""

    what = "output"
    mode = "w"

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._fh = _open_for_write(self.path, self.what, self.mode)
        self.failed: Optional[DataError] = None

    def _guard(self, action) -> None:  # noqa: ANN001 - a zero-argument callable
        if self.failed is not None:
            return
        try:
            action()
        except OSError as exc:
            self.failed = DataError(f"cannot write {self.what} to {self.path}: {exc.strerror or exc}")
            raise self.failed from exc

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self._guard(self._sync)
        finally:
            try:
                self._fh.close()
            except OSError:
                pass  # the buffered rows that could not be written were reported by _guard


class EventLog(_TextSink):
    """JSON lines, one record per event transition: {"type": "start"|"end", "camera", "id", "seq", ...}.

    Append-only: records of earlier runs stay, and a line torn by a kill or a full disk is cut off
    when the file is opened (`vadedge.delivery.durable`). Each record is written whole and fsynced
    before `write` returns; one that fails half way is cut off again, so the file always ends with
    a complete line. `id` is a persistent unique event id (UUID4 hex) and `seq` the event's number
    on its camera: taken from `identify(event)` when given (an `EventFeed.describe`, so the log
    names events as the webhook / MQTT messages do, with their `snapshot` / `clip`), else numbered
    on from the highest `seq` of that camera already in the file, so numbering continues across
    restarts. `event` is the
    detector's per-run event number; `stream`, frames, times, peak and reason as `Event.to_dict`.
    """

    what = "events"
    mode = "ab+"

    def __init__(
        self,
        path: str | Path,
        extra: Optional[dict] = None,
        identify: Optional[Callable[[Event], Optional[Mapping[str, Any]]]] = None,
    ) -> None:
        super().__init__(path)
        self._extra = dict(extra or {})
        self._identify = identify
        self.written = 0
        self._open_ids: dict[tuple[str, int], dict[str, Any]] = {}  # (stream, detector id) -> {id, seq}
        self._next_seq: dict[str, int] = {}
        try:
            self._size = cut_torn_tail(self._fh, self.path)  # bytes of complete records on disk
            self._fh.seek(0)
            old = self._fh.read(self._size) if self._size else b""
        except OSError as exc:
            self._fh.close()
            raise DataError(f"cannot write {self.what} to {self.path}: {exc.strerror or exc}") from exc
        for line in old.splitlines():
            try:
                rec = json.loads(line)
                cam, seq = rec["camera"], rec["seq"]
            except (ValueError, KeyError, TypeError):
                continue  # a record of an older version (no camera / seq) or not ours
            if isinstance(cam, str) and isinstance(seq, int):
                self._next_seq[cam] = max(self._next_seq.get(cam, 0), seq + 1)

    def _ident(self, event: Event) -> dict[str, Any]:
        key = (event.stream, event.id)
        described = self._identify(event) if self._identify is not None else None
        got = dict(described) if described is not None else None
        if got is None:
            got = self._open_ids.get(key)
        if got is None:
            seq = self._next_seq.get(event.stream, 0)
            self._next_seq[event.stream] = seq + 1
            got = {"id": uuid.uuid4().hex, "seq": seq, "snapshot": None, "clip": None}
        if event.is_open:
            self._open_ids[key] = got
        else:
            self._open_ids.pop(key, None)
        return got

    def write(self, event: Event, **fields: object) -> None:
        """Append the record of `event` (plus `fields`, e.g. snapshot=path), fsynced on return."""
        if self.failed is not None:
            return
        ident = self._ident(event)
        record = {
            "type": "start" if event.is_open else "end",
            **event.to_dict(),
            "camera": event.stream,
            "event": event.id,
            **ident,
            **fields,
            **self._extra,
        }
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        data = (json.dumps(record, allow_nan=False, default=float) + "\n").encode()

        def put() -> None:
            append_record(self._fh, data, self._size)
            self._size += len(data)
            self.written += 1

        self._guard(put)

    __call__ = write


def read_events(path: str | Path) -> list[dict]:
    """Parse an events.jsonl file (for tests and tools)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class ScoreCSV(_TextSink):
    """Per-frame rows: stream, frame, timestamp, warmup, score, raw_score, is_anomaly, components, latency."""

    what = "scores"

    def __init__(self, path: str | Path, components: Sequence[str], flush_every: int = 50) -> None:
        super().__init__(path)
        self._w = csv.writer(self._fh)
        self.components = list(components)
        self._guard(
            lambda: self._w.writerow(
                [
                    "stream",
                    "frame",
                    "timestamp",
                    "warmup",
                    "score",
                    "raw_score",
                    "is_anomaly",
                    *self.components,
                    "latency_ms",
                ]
            )
        )
        self.flush_every = flush_every
        self._n = 0

    def write(self, r: FrameResult) -> None:
        fmt = lambda v: "" if v is None else f"{v:.6g}"  # noqa: E731
        row = [
            r.stream,
            r.frame_index,
            f"{r.timestamp:.3f}",
            int(r.warmup),
            fmt(r.score),
            fmt(r.raw_score),
            int(r.is_anomaly),
            *[fmt(r.components.get(c)) for c in self.components],
            f"{r.latency_ms:.2f}",
        ]

        def put() -> None:
            self._w.writerow(row)
            self._n += 1
            if self._n % self.flush_every == 0:
                self._fh.flush()

        self._guard(put)


class HeatScale:
    """Causal scale for error maps: a running high quantile of maps seen on non-anomalous frames."""

    def __init__(self, quantile: float = 0.99, alpha: float = 0.05) -> None:
        self.q, self.alpha = quantile, alpha
        self.level: Optional[float] = None

    def normalise(self, heat: np.ndarray, anomalous: bool) -> np.ndarray:
        hi = float(np.quantile(heat, self.q))
        if self.level is None:
            self.level = max(hi, 1e-8)
        elif not anomalous:
            self.level = (1 - self.alpha) * self.level + self.alpha * max(hi, 1e-8)
        return np.clip(heat / (3.0 * self.level), 0.0, 1.0)


def blend_heatmap(img: np.ndarray, heat01: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """`img` (BGR) with a 0..1 error map resized over it as a JET heatmap, stronger where hotter."""
    h, w = img.shape[:2]
    heat = cv2.resize((heat01 * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(heat, cv2.COLORMAP_JET)
    weight = (heat.astype(np.float32) / 255.0 * opacity)[..., None]
    return (img.astype(np.float32) * (1 - weight) + colour.astype(np.float32) * weight).astype(np.uint8)


def draw_overlay(
    frame: np.ndarray,
    result: Optional[FrameResult],
    heat01: Optional[np.ndarray],
    history: Sequence[tuple[Optional[float], bool]],
    threshold: Optional[float],
    strip_height: int = 48,
    opacity: float = 0.45,
) -> np.ndarray:
    """The annotated frame: heatmap overlay, status text and a score strip appended below."""
    img = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    img = img.copy()
    h, w = img.shape[:2]
    if heat01 is not None:
        img = blend_heatmap(img, heat01, opacity)
    if result is not None:
        if result.warmup:
            text, colour_t = "warming up", (200, 200, 200)
        else:
            text = f"score {result.score:+.2f}" + ("  ANOMALY" if result.is_anomaly else "")
            colour_t = (0, 0, 255) if result.is_anomaly else (0, 220, 0)
        scale = max(0.35, min(1.0, w / 640))
        cv2.putText(img, text, (6, int(20 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (6, int(20 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour_t, 1, cv2.LINE_AA)
        if result.is_anomaly:
            cv2.rectangle(img, (0, 0), (w - 1, h - 1), (0, 0, 255), 3)
    strip = np.full((strip_height, w, 3), 30, np.uint8)
    vals = [v for v, _ in history if v is not None and math.isfinite(v)]
    if vals:
        lo, hi = min(vals), max(vals)
        if threshold is not None:
            lo, hi = min(lo, threshold), max(hi, threshold)
        span = max(hi - lo, 1e-6)
        y = lambda v: int(round((strip_height - 4) - (v - lo) / span * (strip_height - 8)))  # noqa: E731
        n = len(history)
        xs = [int(i * (w - 1) / max(n - 1, 1)) for i in range(n)]
        for i, (_, anomalous) in enumerate(history):
            if anomalous:
                cv2.line(strip, (xs[i], 0), (xs[i], strip_height - 1), (0, 0, 110), 1)
        if threshold is not None:
            cv2.line(strip, (0, y(threshold)), (w - 1, y(threshold)), (0, 200, 255), 1)
        pts = [(xs[i], y(v)) for i, (v, _) in enumerate(history) if v is not None and math.isfinite(v)]
        if len(pts) > 1:
            cv2.polylines(strip, [np.array(pts, np.int32)], False, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([img, strip])


class AnnotatedVideo:
    """MP4 (mp4v) or AVI (MJPG) with heatmap overlay + score strip; frame size fixed by the first frame."""

    def __init__(
        self,
        path: str | Path,
        fps: float = 25.0,
        threshold: Optional[float] = None,
        history: int = 200,
        strip_height: int = 48,
    ) -> None:
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.threshold = threshold
        self.history: deque = deque(maxlen=history)
        self.strip_height = strip_height
        self.scale = HeatScale()
        self._writer: Optional[cv2.VideoWriter] = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0

    def render(self, frame: np.ndarray, result: Optional[FrameResult]) -> np.ndarray:
        heat01 = None
        if result is not None and result.heatmap is not None:
            heat01 = self.scale.normalise(result.heatmap, result.is_anomaly)
        self.history.append((None if result is None else result.score, bool(result and result.is_anomaly)))
        return draw_overlay(frame, result, heat01, list(self.history), self.threshold, self.strip_height)

    def write(self, frame: np.ndarray, result: Optional[FrameResult]) -> np.ndarray:
        out = self.render(frame, result)
        if self._writer is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"cannot write video to {self.path}: {exc.strerror or exc}") from exc
            fourcc = cv2.VideoWriter.fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._size = (out.shape[1], out.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise DataError(f"OpenCV cannot write video {self.path} (use .mp4 or .avi)")
        if (out.shape[1], out.shape[0]) != self._size:
            out = cv2.resize(out, self._size)
        self._writer.write(out)
        self.frames += 1
        return out

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class Window:
    """`--show`: an OpenCV window; pressing q or Esc asks the run loop to stop."""

    def __init__(self, title: str = "vadedge") -> None:
        self.title = title
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise ConfigError(
                "--show needs an OpenCV build with GUI support (pip install opencv-python, "
                "not opencv-python-headless) and a display"
            ) from exc

    def show(self, image: np.ndarray) -> bool:
        """Display; False when the user pressed q / Esc."""
        cv2.imshow(self.title, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass
