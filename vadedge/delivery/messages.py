"""Event messages (new / update / end) as every delivery sink receives them, and persistent ids.

One `EventMessage` per transition of one event of one camera. `id` is a UUID4 (unique without any
shared state, so ids never collide across restarts, processes or hosts); `seq` is a per-camera
counter persisted by `EventIds` next to the spool / log, so a camera's events stay numbered in
order across restarts. `message_id` (`<id>:<n>`, n counting the event's messages) lets a receiver
drop the duplicates that at-least-once delivery can produce.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..errors import DataError
from .durable import fsync_dir

MESSAGE_TYPES = ("new", "update", "end")
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels (x1 / y1 exclusive)


@dataclass(frozen=True)
class EventMessage:
    """One transition of one event: what the JSON-lines, webhook and MQTT sinks all send."""

    type: str  # "new" | "update" | "end"
    id: str  # persistent unique event id (UUID4 hex), the same on every message of the event
    camera: str
    seq: int  # the event's number on this camera (persisted, grows across restarts)
    message_id: str  # "<id>:<n>": unique per message, for receivers that de-duplicate
    start_frame: int
    start_time: float
    peak_score: Optional[float]
    peak_frame: int
    end_frame: Optional[int] = None
    end_time: Optional[float] = None
    reason: Optional[str] = None  # why it ended (end messages): "score", "stream_end", "source_lost", ...
    box: Optional[Box] = None  # bounding box of the peak error region, when the model has error maps
    snapshot: Optional[str] = None  # path of a snapshot image, when a snapshot sink wrote one
    clip: Optional[str] = None  # path of a clip, when a clip sink wrote one
    wall_time: float = 0.0  # time.time() when the message was made
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box) if self.box is not None else None
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"), default=float)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventMessage:
        d = dict(d)
        if d.get("box") is not None:
            d["box"] = tuple(int(v) for v in d["box"])
        return cls(**d)


class EventIds:
    """Per-camera event sequence numbers kept in a small JSON file, replaced atomically and fsynced
    before a number is handed out, so a number is never reused after a crash or restart."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                data = json.loads(self.path.read_text() or "{}")
                if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
                    raise DataError(f"{self.path}: expected {{camera: next number}}, got {data!r:.80}")
                self._next = dict(data)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot use event id file {self.path}: {exc}") from exc

    def allocate(self, camera: str) -> tuple[str, int]:
        """A new (UUID4 hex id, per-camera sequence number) pair; the number is on disk on return."""
        with self._lock:
            seq = self._next.get(camera, 0)
            self._next[camera] = seq + 1
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                with tmp.open("w") as fh:
                    json.dump(self._next, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
                fsync_dir(self.path.parent)
            except OSError as exc:
                raise DataError(f"cannot write event id file {self.path}: {exc.strerror or exc}") from exc
        return uuid.uuid4().hex, seq


def peak_box(heatmap: Optional[np.ndarray], frame_shape: tuple[int, ...], level: float = 0.5) -> Optional[Box]:
    """Bounding box (frame pixels) of the error-map region above `level` of the way from the map's
    median to its maximum; None without a map or for a flat one."""
    if heatmap is None or heatmap.size == 0:
        return None
    heat = np.asarray(heatmap, dtype=np.float32)
    if not np.all(np.isfinite(heat)):
        heat = np.nan_to_num(heat, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(np.median(heat)), float(heat.max())
    if hi <= lo:
        return None
    ys, xs = np.nonzero(heat >= lo + level * (hi - lo))
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    sy, sx = fh / heat.shape[0], fw / heat.shape[1]
    return (
        int(xs.min() * sx),
        int(ys.min() * sy),
        min(fw, int(math.ceil((xs.max() + 1) * sx))),
        min(fh, int(math.ceil((ys.max() + 1) * sy))),
    )
