"""What the runtime hands back: one `FrameResult` per frame and an `Event` per detected anomaly."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Event:
    """An anomalous interval of one stream (frame indices inclusive, timestamps in seconds).

    An event is reported twice: when it is confirmed (it lasted `min_event_frames`; `end_frame` is
    None) and when the score falls below the hysteresis `off` level (or the stream ends / resets).
    `start_frame` is the first frame whose smoothed score crossed `on`, so it can lie before the
    frame on which the event was reported.
    """

    stream: str
    id: int
    start_frame: int
    start_time: float
    peak_score: float
    peak_frame: int
    end_frame: Optional[int] = None
    end_time: Optional[float] = None
    reason: Optional[str] = None  # why it ended: "score" | "stream_end" | "reset" | "interrupted" | "source_lost"

    @property
    def is_open(self) -> bool:
        return self.end_frame is None

    @property
    def frames(self) -> Optional[int]:
        return None if self.end_frame is None else self.end_frame - self.start_frame + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["frames"] = self.frames
        return d


@dataclass
class FrameResult:
    """The verdict on one frame of one stream.

    Warm-up frames (the first clip_length − 1 of a stream, or after a reset) have `warmup=True`,
    `score=None` and no components: there is no full clip to score yet. `score` is the calibrated,
    fused and causally smoothed anomaly score (larger = more anomalous; in units of normal-footage
    spread when the bundle is calibrated); `raw_score` is the fused score before smoothing and
    `components` the graph's raw outputs (e.g. psnr, feature_distance).
    """

    stream: str
    frame_index: int
    timestamp: float
    score: Optional[float] = None
    raw_score: Optional[float] = None
    components: dict[str, float] = field(default_factory=dict)
    is_anomaly: bool = False
    warmup: bool = False
    event_started: Optional[Event] = None  # set on the frame an event is confirmed
    event_ended: Optional[Event] = None  # set on the frame an event closes
    heatmap: Optional[np.ndarray] = field(default=None, repr=False)  # float32 (h, w) error map
    latency_ms: float = 0.0

    def to_dict(self) -> dict:
        """JSON-friendly view (no heatmap)."""
        return {
            "stream": self.stream, "frame": self.frame_index, "timestamp": self.timestamp,
            "warmup": self.warmup, "score": self.score, "raw_score": self.raw_score,
            "components": dict(self.components), "is_anomaly": self.is_anomaly,
            "event_started": self.event_started.id if self.event_started else None,
            "event_ended": self.event_ended.id if self.event_ended else None,
            "latency_ms": self.latency_ms,
        }
