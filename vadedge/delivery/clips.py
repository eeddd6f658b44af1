"""Event clips: an MP4 from `pre_roll` seconds before an event's start to `post_roll` seconds after
its end, cut from a bounded ring of recent frames and encoded by a background thread.

`EventFeed` hands every processed frame to `ClipRecorder.frame` (a deque append: the ring keeps
the frames of the last `pre_roll + margin` seconds of stream time, at most `max_ring` frames per
camera). When an event starts, the ring's frames from `start_time - pre_roll` on are queued for
the writer thread, followed by every later frame of that camera until the stream time passes
`end_time + post_roll` (or at once when the event ended because the stream ended, was stopped or
was lost: no later frames will come). Scoring never waits for the encoder: frames are queued
without blocking (a writer that falls `max_queue` frames behind drops frames, logged). The clip
is written as `<folder>/<camera>-<seq>-<id>.part.mp4` and renamed to `.mp4` when complete, so a
path that exists is a whole file; the path goes into the event's messages from the start.
Frames are the scored frames (the model's sampling rate); the clip's frame rate is measured from
their timestamps.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import DataError

logger = logging.getLogger(__name__)
FINISH_NOW = ("stream_end", "interrupted", "source_lost", "reset")  # end reasons after which no frames follow


@dataclass
class _Recording:
    camera: str
    path: Path
    fps: float
    until: float = math.inf  # stream time after which the clip is complete (end_time + post_roll)
    frames: int = 0  # frames queued
    writer: Any = None  # cv2.VideoWriter, opened by the writer thread on the first frame
    size: Optional[tuple[int, int]] = None
    written: int = 0  # frames written by the writer thread
    failed: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class ClipRecorder:
    """Records event clips with pre- and post-roll; see the module doc."""

    def __init__(
        self,
        folder: Union[str, Path],
        pre_roll: float = 5.0,
        post_roll: float = 5.0,
        margin: float = 2.0,
        max_ring: int = 1000,
        max_queue: int = 2000,
    ) -> None:
        if not (pre_roll >= 0 and post_roll >= 0 and margin >= 0):
            raise DataError(
                f"clips: pre_roll, post_roll and margin must be >= 0, got {pre_roll}, {post_roll}, {margin}"
            )
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot write clips to {self.folder}: {exc.strerror or exc}") from exc
        self.pre_roll, self.post_roll, self.margin = float(pre_roll), float(post_roll), float(margin)
        self._rings: dict[str, deque] = {}  # camera -> deque of (timestamp, image)
        self._max_ring = max_ring
        self._active: dict[str, _Recording] = {}  # event id -> recording still taking frames
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.finished: list[str] = []  # paths of completed clips, in completion order
        self._thread = threading.Thread(target=self._write_loop, name="vadedge-clips", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ run loop side (never blocks)
    def frame(self, camera: str, timestamp: float, image: np.ndarray) -> None:
        """A processed frame of `camera`: into the ring and every open recording of the camera."""
        ring = self._rings.setdefault(camera, deque(maxlen=self._max_ring))
        ring.append((timestamp, image))
        horizon = timestamp - self.pre_roll - self.margin
        while ring and ring[0][0] < horizon:
            ring.popleft()
        for uid, rec in list(self._active.items()):
            if rec.camera != camera:
                continue
            if timestamp > rec.until:
                self._finish(uid)
            else:
                self._put(rec, image)

    def start(self, camera: str, seq: int, event_id: str, start_time: float) -> str:
        """An event started: queue the pre-roll from the ring; returns the clip's final path."""
        ring = self._rings.get(camera, deque())
        stamps = [t for t, _ in ring]
        fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 10.0
        path = self.folder / f"{camera}-{seq}-{event_id}.mp4"
        rec = _Recording(camera, path, fps)
        self._active[event_id] = rec
        for t, image in ring:
            if t >= start_time - self.pre_roll - 1e-9:
                self._put(rec, image)
        return str(path)

    def end(self, event_id: str, end_time: Optional[float], reason: Optional[str]) -> None:
        """The event ended: record `post_roll` seconds more (none when the stream is over)."""
        rec = self._active.get(event_id)
        if rec is None:
            return
        if reason in FINISH_NOW or end_time is None:
            self._finish(event_id)
        else:
            rec.until = end_time + self.post_roll

    def close(self, timeout: float = 30.0) -> None:
        """Finish every recording and wait (up to `timeout` s) until the writer wrote them."""
        for uid in list(self._active):
            self._finish(uid)
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.error("clip writer did not finish within %.0f s; clips may be incomplete", timeout)

    def _finish(self, event_id: str) -> None:
        rec = self._active.pop(event_id)
        self._queue.put((rec, None))  # blocks only if the queue is full: the end marker must not be lost

    def _put(self, rec: _Recording, image: np.ndarray) -> None:
        try:
            self._queue.put_nowait((rec, image))
            rec.frames += 1
        except queue.Full:
            self.dropped += 1
            logger.warning("clip writer is behind: dropped a frame of %s", rec.path.name)

    # ------------------------------------------------------------------ writer thread
    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            rec, image = item
            if rec.failed and image is not None:
                continue
            try:
                if image is None:
                    self._complete(rec)
                else:
                    self._write(rec, image)
            except Exception as exc:  # noqa: BLE001 - one bad clip must not stop the others
                logger.error("clip %s: %s", rec.path, exc)
                rec.failed = True
                if image is None:
                    rec.done.set()

    def _write(self, rec: _Recording, image: np.ndarray) -> None:
        import cv2

        img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if rec.writer is None:
            rec.size = (img.shape[1], img.shape[0])
            part = _part(rec.path)
            rec.writer = cv2.VideoWriter(str(part), cv2.VideoWriter.fourcc(*"mp4v"), rec.fps, rec.size, True)
            if not rec.writer.isOpened():
                rec.writer = None
                raise DataError(f"OpenCV cannot write {part}")
        if (img.shape[1], img.shape[0]) != rec.size:
            img = cv2.resize(img, rec.size)
        rec.writer.write(np.ascontiguousarray(img))
        rec.written += 1

    def _complete(self, rec: _Recording) -> None:
        if rec.writer is not None:
            rec.writer.release()
            part = _part(rec.path)
            with part.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(part, rec.path)
            self.finished.append(str(rec.path))
        rec.done.set()


def _part(path: Path) -> Path:
    """Where a clip is written until complete (OpenCV picks the container by the extension)."""
    return path.with_name(path.stem + ".part" + path.suffix)


__all__ = ["ClipRecorder"]
