"""What the runtime hands back: one `FrameResult` per frame and an `Event` per detected anomaly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..scoring import Event  # defined with the event tracker that creates it

__all__ = ["Event", "FrameResult"]


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
            "stream": self.stream,
            "frame": self.frame_index,
            "timestamp": self.timestamp,
            "warmup": self.warmup,
            "score": self.score,
            "raw_score": self.raw_score,
            "components": dict(self.components),
            "is_anomaly": self.is_anomaly,
            "event_started": self.event_started.id if self.event_started else None,
            "event_ended": self.event_ended.id if self.event_ended else None,
            "latency_ms": self.latency_ms,
        }
