"""Score calibration for the runtime's causal normaliser (DESIGN principle 5).

On held-out *normal* footage, each score component c gets robust statistics (median, 1.4826·MAD;
`vadedge.metrics.RobustStats`). The runtime then computes, frame by frame and causally:

    fused_t = Σ_c w_c · sign_c · (x_c,t − location_c) / scale_c       (larger = more anomalous)
    s_t     = EMA_α(fused)_t  (α = `smoothing`, s_0 = fused_0; α = 1: no smoothing)

The threshold policy `false_alarm_rate` sets `on` so that a fraction `target` of normal frames has
s_t ≥ on, and `off` (hysteresis, off < on) at the (1 − off_factor·target) quantile: an event starts
when s_t reaches `on` and ends when it falls below `off`. Both go into vadedge.json `score`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional

import numpy as np

from vadedge.errors import ConfigError, DataError
from vadedge.metrics import RobustStats, ema
from vadedge.progress import progress_bar

DEFAULT_TARGET = 0.01
DEFAULT_OFF_FACTOR = 5.0
DEFAULT_SMOOTHING = 0.3


def fuse(components: dict[str, np.ndarray], stats: dict[str, RobustStats], signs: dict[str, int],
         weights: dict[str, float]) -> np.ndarray:
    """Σ_c w_c · sign_c · z_c per frame (the same fusion as `vadedge.train.evaluate.Calibration.fuse`)."""
    return sum(w * signs[c] * stats[c].z(components[c]) for c, w in weights.items() if w)


@dataclass
class ScoreCalibration:
    """Per-component statistics + threshold, ready for vadedge.json `score`."""

    stats: dict[str, RobustStats]
    smoothing: float
    threshold: dict
    frames: int
    videos: int
    fused_quantiles: dict[str, float] = field(default_factory=dict)

    def manifest_calibration(self) -> dict:
        return {k: {"location": float(v.location), "scale": float(v.scale)} for k, v in self.stats.items()}

    def summary(self) -> dict:
        return {"frames": self.frames, "videos": self.videos, "smoothing": self.smoothing,
                "threshold": self.threshold, "fused_quantiles": self.fused_quantiles,
                "stats": {k: asdict(v) for k, v in self.stats.items()}}


def fit_threshold(smoothed: np.ndarray, target: float = DEFAULT_TARGET,
                  off_factor: float = DEFAULT_OFF_FACTOR) -> dict:
    """`on` = (1 − target) quantile of the smoothed fused score on normal frames, `off` < `on` below it."""
    if not 0 < target < 0.5:
        raise ConfigError(f"target false-alarm rate must be in (0, 0.5), got {target}")
    if off_factor < 1:
        raise ConfigError(f"off_factor must be >= 1, got {off_factor}")
    s = np.asarray(smoothed, dtype=np.float64)
    if s.size == 0:
        raise DataError("no normal frames to fit a threshold on")
    on = float(np.quantile(s, 1.0 - target, method="higher"))
    off = float(np.quantile(s, 1.0 - min(0.5, off_factor * target), method="lower"))
    if off >= on:  # flat scores: keep a strict hysteresis gap
        spread = float(np.std(s)) or 1.0
        off = on - 0.1 * spread
    return {"on": on, "off": off, "policy": "false_alarm_rate", "target": float(target),
            "off_target": float(min(0.5, off_factor * target))}


def calibrate_scores(videos: Iterable[dict[str, np.ndarray]], signs: dict[str, int], weights: dict[str, float],
                     *, target: float = DEFAULT_TARGET, smoothing: float = DEFAULT_SMOOTHING,
                     off_factor: float = DEFAULT_OFF_FACTOR) -> ScoreCalibration:
    """Fit statistics and threshold on per-video score components of normal footage (one dict per video)."""
    videos = [v for v in videos if v and next(iter(v.values())).size]
    if not videos:
        raise DataError("score calibration got no scored frames (videos shorter than one clip?)")
    names = set(signs)
    for v in videos:
        if set(v) != names:
            raise ConfigError(f"score components {sorted(v)} do not match the model's {sorted(names)}")
    if not 0 < smoothing <= 1:
        raise ConfigError(f"smoothing must be in (0, 1], got {smoothing}")
    stats = {c: RobustStats.fit(np.concatenate([v[c] for v in videos])) for c in sorted(names)}
    smoothed = np.concatenate([ema(fuse(v, stats, signs, weights), smoothing) for v in videos])
    threshold = fit_threshold(smoothed, target, off_factor)
    qs = {f"q{q:g}": float(np.quantile(smoothed, q / 100)) for q in (50, 90, 99, 99.9)}
    return ScoreCalibration(stats, float(smoothing), threshold, int(smoothed.size), len(videos), qs)


def score_footage(stream, footage, spec, state: dict[str, np.ndarray], *, max_videos: Optional[int] = None,
                  progress: bool = False) -> list[dict[str, np.ndarray]]:
    """Score components of every video of `footage` (a Split) through an `OnnxStream`, state carried per video."""
    from .footage import iter_videos

    videos = list(iter_videos(footage, spec, stream.clip_length, max_videos))
    out = []
    for _, frames in progress_bar(videos, total=len(videos), desc="score calibration", enabled=progress):
        out.append(stream.score_frames(frames, state))
    return out
