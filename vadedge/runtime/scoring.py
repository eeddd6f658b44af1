"""Causal scoring (DESIGN principle 5): calibrated per-component normalisation → fusion → EMA →
hysteresis threshold with a minimum event length → events.

Nothing here looks at future frames: the statistics come from the bundle (calibrated on normal
footage by the exporter), so the score of frame t depends only on frames ≤ t. The fused score is
Σ_c w_c · sign_c · (x_c − location_c) / scale_c — the same formula as the streaming protocol of
`vadedge eval` — and the threshold (`on` / `off`) is applied to the smoothed score.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import ConfigError
from .results import Event


@dataclass(frozen=True)
class ScoreRecipe:
    """How raw score components become a decision; read from vadedge.json `score` (+ overrides)."""

    signs: Mapping[str, int]
    weights: Mapping[str, float]
    calibration: Optional[Mapping[str, tuple[float, float]]] = None  # name -> (location, scale)
    smoothing: float = 1.0  # EMA factor α in y_t = α x_t + (1 − α) y_{t−1}; 1 = none
    on: Optional[float] = None  # event starts when the smoothed score reaches `on`
    off: Optional[float] = None  # … and ends when it falls below `off`
    min_event_frames: int = 1

    def __post_init__(self) -> None:
        if set(self.signs) != set(self.weights):
            raise ConfigError(f"score signs {sorted(self.signs)} and weights {sorted(self.weights)} differ")
        if not 0 < self.smoothing <= 1:
            raise ConfigError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.min_event_frames < 1:
            raise ConfigError(f"min_event_frames must be >= 1, got {self.min_event_frames}")
        if (self.on is None) != (self.off is None):
            raise ConfigError("threshold needs both 'on' and 'off' (or neither)")
        if self.on is not None and self.off > self.on:
            raise ConfigError(f"threshold off ({self.off}) must not exceed on ({self.on})")
        for name, (_, scale) in (self.calibration or {}).items():
            if not scale > 0:
                raise ConfigError(f"calibration scale of '{name}' must be > 0, got {scale}")

    @property
    def has_threshold(self) -> bool:
        return self.on is not None

    @classmethod
    def from_manifest(cls, score: Mapping, *, threshold: float | tuple[float, float] | None = None,
                      smoothing: Optional[float] = None, min_event_frames: Optional[int] = None) -> "ScoreRecipe":
        """Build from a manifest's `score` section; explicit arguments override the bundle's values.

        `threshold` may be one number (then off = on, no hysteresis) or (on, off).
        """
        calib = score.get("calibration")
        calibration = ({k: (float(v["location"]), float(v["scale"])) for k, v in calib.items()}
                       if calib else None)
        on = off = None
        if threshold is not None:
            on, off = (threshold, threshold) if isinstance(threshold, (int, float)) else tuple(threshold)
        elif score.get("threshold"):
            on, off = score["threshold"]["on"], score["threshold"]["off"]
        return cls(
            signs={k: int(v) for k, v in score["signs"].items()},
            weights={k: float(v) for k, v in score["weights"].items()},
            calibration=calibration,
            smoothing=float(smoothing if smoothing is not None else score.get("smoothing", 1.0)),
            on=None if on is None else float(on), off=None if off is None else float(off),
            min_event_frames=int(min_event_frames if min_event_frames is not None
                                 else score.get("min_event_frames", 1)),
        )

    def fuse(self, components: Mapping[str, float]) -> float:
        """Σ_c w_c · sign_c · z_c with z_c the calibrated component (raw value if uncalibrated)."""
        total = 0.0
        for name, w in self.weights.items():
            if not w:
                continue
            x = float(components[name])
            if self.calibration is not None:
                loc, scale = self.calibration[name]
                x = (x - loc) / scale
            total += w * self.signs[name] * x
        return total


class EventTracker:
    """Hysteresis + minimum length over a causal score sequence of one stream.

    States: idle → (score ≥ on) candidate → (lasted min_event_frames at or above off) open event →
    (score < off) closed. A candidate that falls below `off` before reaching the minimum length is
    dropped without an event. `is_anomaly` is true for the frames of an open event from the frame
    it is confirmed on.
    """

    def __init__(self, stream: str, on: float, off: float, min_frames: int = 1) -> None:
        self.stream, self.on, self.off, self.min_frames = stream, on, off, min_frames
        self._next_id = 0
        self._cand: Optional[Event] = None  # candidate or open event
        self._cand_len = 0
        self._confirmed = False
        self._last: tuple[int, float] = (-1, 0.0)  # last frame index / time seen

    @property
    def open_event(self) -> Optional[Event]:
        return self._cand if self._confirmed else None

    def update(self, frame: int, t: float, score: float) -> tuple[bool, Optional[Event], Optional[Event]]:
        """Feed one smoothed score; returns (is_anomaly, event confirmed now, event closed now)."""
        started = ended = None
        prev_frame, prev_t = self._last
        self._last = (frame, t)
        if math.isnan(score):
            score = -math.inf  # a NaN score never raises or prolongs an event
        if self._cand is None:
            if score >= self.on:
                self._cand = Event(self.stream, self._next_id, frame, t, score, frame)
                self._cand_len = 1
                self._confirmed = False
        elif score >= self.off:
            self._cand_len += 1
            if score > self._cand.peak_score:
                self._cand = dataclasses.replace(self._cand, peak_score=score, peak_frame=frame)
        else:
            ended = self._close(prev_frame, prev_t, "score")
        if self._cand is not None and not self._confirmed and self._cand_len >= self.min_frames:
            self._confirmed = True
            self._next_id += 1
            started = self._cand
        return self._confirmed, started, ended

    def _close(self, end_frame: int, end_time: float, reason: str) -> Optional[Event]:
        cand, confirmed = self._cand, self._confirmed
        self._cand, self._cand_len, self._confirmed = None, 0, False
        if cand is None or not confirmed:
            return None  # a too-short candidate: no event
        return dataclasses.replace(cand, end_frame=end_frame, end_time=end_time, reason=reason)

    def close(self, reason: str = "stream_end") -> Optional[Event]:
        """End the stream: close an open event at the last frame seen (None if there is none)."""
        return self._close(*self._last, reason)


class CausalScorer:
    """Per-stream scorer: fuse → EMA → EventTracker. `update` is called once per scored frame."""

    def __init__(self, recipe: ScoreRecipe, stream: str) -> None:
        self.recipe = recipe
        self.stream = stream
        self._ema: Optional[float] = None
        self.tracker = (EventTracker(stream, recipe.on, recipe.off, recipe.min_event_frames)
                        if recipe.has_threshold else None)

    def update(self, frame: int, t: float, components: Mapping[str, float]
               ) -> tuple[float, float, bool, Optional[Event], Optional[Event]]:
        """(smoothed score, fused raw score, is_anomaly, event confirmed, event closed)."""
        raw = self.recipe.fuse(components)
        a = self.recipe.smoothing
        if self._ema is None or not math.isfinite(self._ema):
            self._ema = raw
        else:
            self._ema = a * raw + (1 - a) * self._ema
        if self.tracker is None:
            return self._ema, raw, False, None, None
        flag, started, ended = self.tracker.update(frame, t, self._ema)
        return self._ema, raw, flag, started, ended

    def close(self, reason: str = "stream_end") -> Optional[Event]:
        return self.tracker.close(reason) if self.tracker is not None else None

    def reset(self, reason: str = "reset") -> Optional[Event]:
        """Forget the smoothing history; closes (and returns) an open event."""
        ended = self.close(reason)
        self._ema = None
        return ended
