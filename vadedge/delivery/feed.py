"""Turns detector events and frame results into new / update / end messages for every sink.

`EventFeed` is fed from the run loop: `event(e)` from the detector's event callback and
`frame(result, image_shape)` after each processed frame. A "new" message waits for the frame
that confirmed the event so it carries the box of that frame's error map; "update" is sent while
the event is open when its peak score rose, at most every `update_interval` seconds of stream
time; "end" carries the final peak, box and reason. Every message goes to every sink in order; a
sink that raises does not keep the others from receiving it (the first error is re-raised).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from ..errors import ConfigError
from ..scoring import Event
from .base import Sink
from .messages import Box, EventIds, EventMessage, peak_box
from .snapshots import SnapshotWriter

if TYPE_CHECKING:
    from .clips import ClipRecorder
from .spool import Spool

logger = logging.getLogger(__name__)
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_camera_name(name: str) -> str:
    """Camera names go into MQTT topics and file names: letters, digits, '_', '.', '-'."""
    if not CAMERA_NAME.match(name or ""):
        raise ConfigError(f"camera name must be 1-64 letters, digits, '_', '.' or '-', got {name!r}")
    return name


def _locked(method):  # noqa: ANN001, ANN201 - a method decorator
    """Serialise calls: cameras may report from their own threads; messages stay in one order."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        with self._lock:
            return method(self, *args, **kwargs)

    return call


@dataclass
class _Open:
    id: str
    seq: int
    event: Event
    sent: int = 0  # messages sent for this event
    peak: float = float("-inf")
    peak_frame: int = -1
    box: Optional[Box] = None
    last_update: float = float("-inf")  # stream time of the last message
    announced: bool = False
    image: Optional[np.ndarray] = None  # the frame the box was taken from (for the snapshot)
    heat: Optional[np.ndarray] = None  # and its error map
    snapshot: Optional[str] = None  # path of the snapshot written for the current image
    snapshot_stale: bool = False  # image changed since the snapshot was written
    clip: Optional[str] = None


class EventFeed:
    """Fan-out of one camera-event stream to sinks; see module doc."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        state_dir: Union[str, Path],
        update_interval: float = 1.0,
        on_message: Optional[Callable[[EventMessage], None]] = None,
        snapshots: Optional[SnapshotWriter] = None,
        clips: Optional[ClipRecorder] = None,
    ) -> None:
        self.sinks = list(sinks)
        names = [s.name for s in self.sinks]
        if len(set(names)) != len(names):
            raise ConfigError(f"two sinks with the same target: {', '.join(sorted(names))}")
        self.ids = EventIds(Path(state_dir) / "event-ids.json")
        self.spool = Spool(Path(state_dir) / "spool")
        for sink in self.sinks:
            sink.open(self.spool.reader(sink.name))
        self.update_interval = update_interval
        self._open: dict[tuple[str, int], _Open] = {}  # (camera, detector event id) -> state
        self._ended: dict[str, tuple[int, dict[str, Any]]] = {}  # camera -> (detector id, describe()) of its last end
        self._on_message = on_message
        self.snapshots = snapshots
        self.clips = clips
        self.sent = 0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ input
    @_locked
    def event(self, e: Event) -> None:
        """A detector event started (is_open) or ended; call from `Detector.on_event`."""
        key = (e.stream, e.id)
        if e.is_open:
            uid, seq = self.ids.allocate(e.stream)
            opened = self._open[key] = _Open(uid, seq, e, peak=e.peak_score, peak_frame=e.peak_frame)
            if self.clips is not None:
                opened.clip = self.clips.start(e.stream, seq, uid, e.start_time)
            return
        st = self._open.pop(key, None)
        if st is None:  # an end without a start we saw (e.g. a feed attached mid-event)
            uid, seq = self.ids.allocate(e.stream)
            st = _Open(uid, seq, e, peak=e.peak_score, peak_frame=e.peak_frame)
        if not st.announced:
            self._emit("new", st)
        if e.peak_score >= st.peak:
            st.peak, st.peak_frame = e.peak_score, e.peak_frame
        st.event = e
        if self.clips is not None and st.clip is not None:
            self.clips.end(st.id, e.end_time, e.reason)
        self._emit("end", st)
        self._ended[e.stream] = (e.id, self._describe(st))

    @_locked
    def describe(self, e: Event) -> Optional[dict[str, Any]]:
        """{"id", "seq", "snapshot", "clip"} as this feed's messages give them for detector event `e`
        (open, or the camera's last ended one), so other outputs (the `--events` log) name the
        event as its messages do; None for an event this feed did not see."""
        st = self._open.get((e.stream, e.id))
        if st is not None:
            return self._describe(st)
        last = self._ended.get(e.stream)
        return dict(last[1]) if last is not None and last[0] == e.id else None

    @staticmethod
    def _describe(st: _Open) -> dict[str, Any]:
        return {"id": st.id, "seq": st.seq, "snapshot": st.snapshot, "clip": st.clip}

    @_locked
    def frame(
        self,
        stream: str,
        frame_index: int,
        timestamp: float,
        score: Optional[float],
        heatmap=None,
        image_shape: Optional[tuple[int, ...]] = None,
        image: Optional[np.ndarray] = None,
    ) -> None:  # noqa: ANN001
        """After each processed frame of `stream`: announce a confirmed event, send updates.
        `image` (the frame) is kept for the snapshot when the feed writes snapshots."""
        if image_shape is None and image is not None:
            image_shape = image.shape
        if self.clips is not None and image is not None:
            self.clips.frame(stream, timestamp, image)
        for (cam, _), st in list(self._open.items()):
            if cam != stream:
                continue
            rose = score is not None and score > st.peak
            if rose or (not st.announced and st.box is None):
                if score is not None and rose:
                    st.peak, st.peak_frame = float(score), frame_index
                if image_shape is not None:
                    st.box = peak_box(heatmap, image_shape) or st.box
                if self.snapshots is not None and image is not None:
                    st.image = image.copy()
                    st.heat = None if heatmap is None else np.array(heatmap, dtype=np.float32)
                    st.snapshot_stale = True
            if not st.announced:
                st.last_update = timestamp
                self._emit("new", st)
            elif rose and timestamp - st.last_update >= self.update_interval:
                st.last_update = timestamp
                self._emit("update", st)

    # ------------------------------------------------------------------ output
    def _snapshot(self, st: _Open) -> None:
        """Write the snapshot of the frame in `st` if it changed; a failure is logged, not raised:
        the event's message matters more than its picture."""
        if self.snapshots is None or st.image is None or not st.snapshot_stale:
            return
        st.snapshot_stale = False
        try:
            st.snapshot = self.snapshots.write(st.event.stream, st.seq, st.id, st.image, st.heat, st.box)
        except Exception as exc:  # noqa: BLE001 - DataError or an OpenCV error
            logger.error("snapshot of event %s (%s) failed: %s", st.id, st.event.stream, exc)
        if st.event.end_frame is not None:
            st.image = st.heat = None

    def _emit(self, kind: str, st: _Open) -> None:
        e = st.event
        st.announced = True
        self._snapshot(st)
        msg = EventMessage(
            type=kind,
            id=st.id,
            camera=e.stream,
            seq=st.seq,
            message_id=f"{st.id}:{st.sent}",
            start_frame=e.start_frame,
            start_time=e.start_time,
            peak_score=st.peak,
            peak_frame=st.peak_frame,
            end_frame=e.end_frame if kind == "end" else None,
            end_time=e.end_time if kind == "end" else None,
            reason=e.reason if kind == "end" else None,
            box=st.box,
            snapshot=st.snapshot,
            clip=st.clip,
            wall_time=time.time(),
        )
        st.sent += 1
        self.publish(msg)

    @_locked
    def publish(self, msg: EventMessage) -> None:
        """Spool one message (durable for every sink on return), then let synchronous sinks write
        it; all of them run even when one fails, then the first failure is re-raised."""
        self.spool.put(msg.to_json())
        first: Optional[BaseException] = None
        for sink in self.sinks:
            pump = getattr(sink, "pump", None)
            if pump is None:
                continue
            try:
                pump()
            except Exception as exc:  # noqa: BLE001 - re-raised after the other sinks got it
                logger.error("sink %s failed on event %s (%s): %s", sink.name, msg.id, msg.type, exc)
                first = first or exc
        self.sent += 1
        if self._on_message is not None:
            self._on_message(msg)
        if first is not None:
            raise first

    def close(self) -> None:
        """Finish the clips, close every sink (network sinks first drain their spool for a moment);
        re-raises the first failure after all were closed."""
        first: Optional[BaseException] = None
        if self.clips is not None:
            self.clips.close()  # finishes the clips being recorded (their post-roll ends here)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                logger.error("closing sink %s failed: %s", sink.name, exc)
                first = first or exc
        self.spool.close()
        if first is not None:
            raise first


__all__ = ["EventFeed", "check_camera_name"]
