"""The temporal contract (docs/runtime.md "Frame rate"): score a source at the rate the model was trained at.

A model that predicts the next frame learned how far things move between two frames *at its
training rate*. A 30 fps camera shows a third of that motion per frame, a 5 fps one twice of it,
so unsampled footage at another rate is scored as if everything moved at the wrong speed (the
shipped Ped2 model flags 100 % of normal frames with every 2nd or 3rd frame dropped).

`FrameSampler` keeps frames at a uniform stride in *time*: a frame is kept when its timestamp
reaches the next due time, and the due time advances by exactly one period (1 / target fps), so
30 -> 10 fps keeps every 3rd frame and non-integer ratios (25 -> 10: frames 0, 3, 5, 8, 10, ...)
average out by accumulation instead of drifting. A source slower than the target cannot be
sampled up (no frames are invented): every frame is kept and the sampler warns ONCE that the
scores will read high. Used by `Source` (the decoder thread, so a live source that falls behind
still drops unkept frames first, never kept ones unevenly) and by `sample_indices` for arrays.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Optional

import numpy as np

from ..bundle import DEFAULT_FPS
from ..errors import ConfigError

logger = logging.getLogger(__name__)
TOLERANCE = 0.1  # a frame up to 10 % of a period early still counts as due (timestamp jitter)
SLOW_MARGIN = 0.9  # a source below 90 % of the target rate is "slower than trained"
SLOW_WINDOW = 8  # intervals measured before judging a source's rate from its timestamps


def check_fps(fps: float, what: str = "fps") -> float:
    """A finite frame rate > 0 (ConfigError otherwise)."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of frames per second, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} must be a finite number > 0, got {fps!r}")
    return value


def trained_fps(config: Mapping[str, Any], fps: Optional[float] = None) -> float:
    """The frame rate a checkpoint was trained at, for a bundle's `input.fps`: `fps` if given, else its
    config's data.fps, else DEFAULT_FPS (the Ped2 rate, which `vadedge train` data has had so far)."""
    data = config.get("data")
    value = fps if fps is not None else data.get("fps") if isinstance(data, Mapping) else None
    return check_fps(value, "fps") if value is not None else DEFAULT_FPS


def slow_source_message(name: str, source_fps: float, target_fps: float) -> str:
    """What a source slower than the trained rate means and what vadedge does about it."""
    return (
        f"{name} delivers {source_fps:.3g} frames/s, slower than the {target_fps:g} frames/s the model "
        f"was trained at; every frame is scored (none can be invented), so objects move "
        f"{target_fps / source_fps:.2g}x farther between frames than in training and scores read high "
        f"(more false alarms). Use a source at >= {target_fps:g} fps, or calibrate the bundle on footage "
        f"at this rate (vadedge calibrate BUNDLE FOOTAGE --out NEW)"
    )


class FrameSampler:
    """Decides per timestamp whether a frame is kept, for a source sampled at `target_fps`."""

    def __init__(self, target_fps: float, *, name: str = "source", source_fps: Optional[float] = None) -> None:
        self.target_fps = check_fps(target_fps, "target fps")
        self.period = 1.0 / self.target_fps
        self.name = name
        self.kept = 0
        self.skipped = 0
        self.warned = False
        self._due: Optional[float] = None
        self._last_t: Optional[float] = None
        self._intervals: list[float] = []
        if source_fps is not None and source_fps > 0:
            self.note_source_fps(source_fps)

    def note_source_fps(self, source_fps: float) -> None:
        """A rate the source reports (container fps, --fps): warn now if it is too slow."""
        if source_fps < SLOW_MARGIN * self.target_fps:
            self._warn(source_fps)

    def _warn(self, source_fps: float) -> None:
        if not self.warned:
            self.warned = True
            logger.warning(slow_source_message(self.name, source_fps, self.target_fps))

    def keep(self, t: float) -> bool:
        """True if the frame at `t` seconds is kept (call once per frame, timestamps non-decreasing)."""
        self._measure(t)
        if self._due is None or t >= self._due - TOLERANCE * self.period:
            due = t if self._due is None else self._due
            due += self.period
            if due <= t:  # a slower source or a gap: restart the grid here rather than burst
                due = t + self.period
            self._due = due
            self.kept += 1
            return True
        self.skipped += 1
        return False

    def _measure(self, t: float) -> None:
        """Judge the source's rate from its timestamps (live sources report no reliable fps)."""
        if self._last_t is not None and not self.warned and len(self._intervals) < SLOW_WINDOW:
            dt = t - self._last_t
            if dt > 0:
                self._intervals.append(dt)
            if len(self._intervals) == SLOW_WINDOW:
                self.note_source_fps(1.0 / float(np.median(self._intervals)))
        self._last_t = t


def sample_indices(count: int, source_fps: float, target_fps: float, *, name: str = "video") -> np.ndarray:
    """Indices of the frames of a `count`-frame video at `source_fps` that a source sampled at `target_fps` keeps."""
    src = check_fps(source_fps, "source fps")
    sampler = FrameSampler(target_fps, name=name, source_fps=src)
    return np.array([i for i in range(count) if sampler.keep(i / src)], dtype=np.int64)
