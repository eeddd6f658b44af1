"""The one scoring core: robust statistics → fusion → causal EMA → hysteresis threshold → events.

Why causal, and where it sits in the data flow: docs/design.md §5, §8.

Used by the runtime (`Detector`, per frame), by score calibration (`vadedge export`, per video
array) and by `vadedge eval` (the streaming protocol runs through `Detector`, hence through this
module). numpy only: no torch, no ONNX Runtime.

On normal footage each score component c gets robust statistics (median, 1.4826·MAD). A frame's
fused score and its smoothed score are, causally (larger = more anomalous):

    fused_t = Σ_c w_c · sign_c · (x_c,t − location_c) / scale_c
    s_t     = α · fused_t + (1 − α) · s_{t−1},   s_0 = fused_0   (α = `smoothing`; α = 1: none)

The `false_alarm_rate` threshold policy sets `on` so that a fraction `target` of normal frames has
s_t ≥ on, and `off` (hysteresis, off < on) at the (1 − off_factor·target) quantile. An event
starts when s_t reaches `on`, is confirmed once it lasted `min_event_frames` at or above `off`, and
ends when s_t falls below `off`. All of these values travel in vadedge.json `score`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from .errors import ConfigError, DataError

if TYPE_CHECKING:  # the manifest types import OpenCV (preprocess); scoring stays numpy-only
    from .bundle import ScoreSpec

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution × this = its standard deviation
DEFAULT_TARGET = 0.01
DEFAULT_OFF_FACTOR = 5.0
DEFAULT_SMOOTHING = 0.3
DEFAULT_MIN_EVENT_FRAMES = 5

ArrayOrFloat = Union[np.ndarray, float]


# ---------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class RobustStats:
    """Location and scale of one score component on normal footage (median, 1.4826·MAD)."""

    location: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> RobustStats:
        v = np.asarray(values, dtype=np.float64)
        med = float(np.median(v))
        mad = float(np.median(np.abs(v - med))) * MAD_TO_SIGMA
        if mad <= 1e-12:  # degenerate (constant) input: fall back to std, then 1
            mad = float(v.std()) or 1.0
        return cls(med, mad)

    def z(self, values: ArrayOrFloat) -> ArrayOrFloat:
        return (np.asarray(values, dtype=np.float64) - self.location) / self.scale


def fit_stats(videos: Iterable[Mapping[str, np.ndarray]]) -> dict[str, RobustStats]:
    """RobustStats of each component over the frames of all `videos` pooled (one dict per video)."""
    videos = list(videos)
    if not videos:
        raise DataError("no scored videos to fit score statistics on")
    return {c: RobustStats.fit(np.concatenate([np.asarray(v[c]) for v in videos])) for c in sorted(videos[0])}


# ---------------------------------------------------------------------------------- local error
DB_EPS = 1e-10  # added to an energy before −10·log10, so a perfect prediction gives a finite 100 dB


def window_max_mse(error_map: np.ndarray, cells: int, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Max over the frame of the mean error over `cells`×`cells` windows (box filter, stride one cell).

    `error_map`: [B, h, w] (or [h, w]) per-cell squared error; the box filter is an integral image
    (cumulative sums), so the cost does not grow with the window. `mask` ([h, w], 1 = scored,
    0 = ignored) is multiplied into the map first, so masked cells never raise the maximum.
    Returns [B] (or a 0-d array for one map).
    """
    m = np.asarray(error_map, dtype=np.float64)
    single = m.ndim == 2
    if single:
        m = m[None]
    if m.ndim != 3:
        raise DataError(f"error map must be [B, h, w], got shape {m.shape}")
    n, h, w = m.shape
    if not 1 <= cells <= min(h, w):
        raise ConfigError(f"local window of {cells} cells does not fit a {h}x{w} error map")
    if mask is not None:
        if np.shape(mask) != (h, w):
            raise ConfigError(f"mask of shape {np.shape(mask)} does not match the {h}x{w} error map")
        m = m * np.asarray(mask, dtype=np.float64)
    c = np.zeros((n, h + 1, w + 1))
    c[:, 1:, 1:] = m.cumsum(1).cumsum(2)
    s = c[:, cells:, cells:] - c[:, :-cells, cells:] - c[:, cells:, :-cells] + c[:, :-cells, :-cells]
    out = s.reshape(n, -1).max(1) / (cells * cells)
    return out[0] if single else out


def local_error_db(error_map: np.ndarray, cells: int, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The local error component: −10·log10 of `window_max_mse` (a "local PSNR" in dB, sign −1 like psnr).

    dB, not the raw MSE, so that robust statistics see a roughly symmetric distribution rather than a
    heavy tail (docs/causal-scores.md). The whole-map mean in dB equals psnr.
    """
    return -10.0 * np.log10(window_max_mse(error_map, cells, mask) + DB_EPS)


def error_map_cell(input_hw: tuple[int, int], map_hw: tuple[int, int]) -> int:
    """Model-input pixels per error-map cell (e.g. 4 for a 32×48 map of a 128×192 input)."""
    (ih, iw), (mh, mw) = input_hw, map_hw
    if mh < 1 or mw < 1 or ih % mh or iw % mw or ih // mh != iw // mw:
        raise ConfigError(f"error map {mh}x{mw} is not a uniform downsampling of the {ih}x{iw} input")
    return ih // mh


def local_components(
    error_maps: np.ndarray, windows: Mapping[str, int], input_hw: tuple[int, int], mask: Optional[np.ndarray] = None
) -> dict[str, np.ndarray]:
    """{name: [B] local error in dB} for windows given in model-input pixels (multiples of one cell)."""
    maps = np.asarray(error_maps)
    cell = error_map_cell(input_hw, maps.shape[-2:])
    out = {}
    for name, px in windows.items():
        if px % cell:
            raise ConfigError(
                f"local component '{name}': window {px} px is not a multiple of the error map's cell ({cell} px)"
            )
        out[name] = local_error_db(maps, px // cell, mask)
    return out


# ---------------------------------------------------------------------------------- component selection
MIN_RELATIVE_SPREAD = 0.1  # robust scale / location (energy units) below this: a degenerate component
MAX_HELDOUT_Z = 3.0  # |median| or spread of held-out z-scores above this: the statistics do not transfer


SELECTION_RULE = (
    "docs/causal-scores.md: relative spread >= 0.1 and held-out |z median|, z spread <= 3 on "
    "normal footage the model never saw; equal weights (vadedge.scoring.select_components)"
)
DB_COMPONENTS = frozenset({"psnr"})  # graph components in dB (−10·log10 of an MSE); the rest are energies


def component_units(names: Iterable[str], local: Iterable[str] = ()) -> dict[str, str]:
    """The units `select_components` needs: dB for PSNR and the local error components (`local`, the
    names a manifest declares in `score.local`), energy for every other graph component (errors and
    distances: MSE, feature distance, PSCD patch errors)."""
    db = DB_COMPONENTS | set(local)
    return {c: "db" if c in db else "energy" for c in names}


def to_energy(values: ArrayLike, units: str) -> np.ndarray:
    """A component in non-negative energy units: dB (−10·log10 of an MSE) back to the MSE; energy as is."""
    x = np.asarray(values, dtype=np.float64)
    if units == "db":
        return np.power(10.0, -x / 10.0)
    if units == "energy":
        return x
    raise ConfigError(f"component units must be 'db' or 'energy', got {units!r}")


@dataclass
class ComponentSelection:
    """Which components a fusion keeps (equal weights) and why the others were dropped."""

    weights: dict[str, float]  # every component; 0 for a dropped one
    dropped: dict[str, str]  # component -> reason
    evidence: dict[str, dict[str, float]]  # component -> relative_spread, heldout_z_median, heldout_z_spread


def select_components(
    fit_videos: Iterable[Mapping[str, np.ndarray]],
    heldout_videos: Iterable[Mapping[str, np.ndarray]],
    signs: Mapping[str, int],
    units: Mapping[str, str],
    *,
    min_relative_spread: float = MIN_RELATIVE_SPREAD,
    max_heldout_z: float = MAX_HELDOUT_Z,
) -> ComponentSelection:
    """The degenerate-component guard and weight rule of docs/causal-scores.md, on normal footage only.

    Both video sets must be footage the model did not train on (a distance whose queries sit on the
    model's memory items looks healthy on its own training footage). A component is dropped when
    its relative spread (robust scale / location in energy units, over `fit_videos`) is below
    `min_relative_spread`, or when, with statistics fitted on `fit_videos`, the z-scores of
    `heldout_videos` have |median| or spread (1.4826·MAD) above `max_heldout_z`. The survivors get
    equal weights 1/n (on Ped2 inverse held-out spread ranked the same; equal has no estimation
    noise). Test labels are never involved.
    """
    fit_v, held_v = list(fit_videos), list(heldout_videos)
    if not fit_v or not held_v:
        raise DataError("component selection needs normal footage to fit on and held-out normal footage")
    names = sorted(signs)
    for v in fit_v + held_v:
        if missing := [c for c in names if c not in v]:
            raise ConfigError(f"component selection: footage has no values for {missing}")
    if missing := [c for c in names if c not in units]:
        raise ConfigError(f"component selection: no units for {missing}")
    dropped: dict[str, str] = {}
    evidence: dict[str, dict[str, float]] = {}
    for c in names:
        fit_x = np.concatenate([np.asarray(v[c], dtype=np.float64) for v in fit_v])
        held_x = np.concatenate([np.asarray(v[c], dtype=np.float64) for v in held_v])
        energy = to_energy(fit_x, units[c])
        level = float(np.median(energy))  # not RobustStats: its fallback scale would hide a constant
        spread = float(np.median(np.abs(energy - level))) * MAD_TO_SIGMA
        rel = spread / abs(level) if level else (0.0 if spread == 0 else math.inf)
        z = signs[c] * np.asarray(RobustStats.fit(fit_x).z(held_x))
        z_med = float(np.median(z))
        z_spread = float(np.median(np.abs(z - z_med))) * MAD_TO_SIGMA
        evidence[c] = {"relative_spread": float(rel), "heldout_z_median": z_med, "heldout_z_spread": z_spread}
        reasons = []
        if rel < min_relative_spread:
            reasons.append(f"relative spread {rel:.3g} < {min_relative_spread:g} on normal footage")
        if abs(z_med) > max_heldout_z or z_spread > max_heldout_z:
            reasons.append(
                f"held-out normal footage gets z median {z_med:.3g}, spread {z_spread:.3g} (limit {max_heldout_z:g})"
            )
        if reasons:
            dropped[c] = "; ".join(reasons)
    kept = [c for c in names if c not in dropped]
    if not kept:
        raise DataError(f"every score component is degenerate on this footage: {dropped}")
    weights = {c: (0.0 if c in dropped else 1.0 / len(kept)) for c in names}
    return ComponentSelection(weights, dropped, evidence)


# ---------------------------------------------------------------------------------- fusion + EMA
def fuse(
    components: Mapping[str, ArrayOrFloat],
    signs: Mapping[str, int],
    weights: Mapping[str, float],
    stats: Optional[Mapping[str, RobustStats]] = None,
) -> ArrayOrFloat:
    """Σ_c w_c · sign_c · z_c (z_c = the raw component when `stats` is None); arrays or one frame's floats.

    Components with weight 0 are skipped. The one place the fused score is computed.
    """
    total: ArrayOrFloat = 0.0
    for c, w in weights.items():
        if not w:
            continue
        z = stats[c].z(components[c]) if stats is not None else np.asarray(components[c], dtype=np.float64)
        total = total + w * signs[c] * z
    return total if np.ndim(total) else float(total)


def ema_step(previous: Optional[float], x: float, alpha: float) -> float:
    """One step of the causal EMA: α·x + (1 − α)·previous; starts (and restarts after a NaN/inf) at x."""
    if previous is None or not math.isfinite(previous):
        return float(x)
    return float(alpha * x + (1 - alpha) * previous)


def check_smoothing(alpha: float) -> float:
    if not 0 < alpha <= 1:
        raise ConfigError(f"smoothing must be in (0, 1], got {alpha}")
    return float(alpha)


def ema(x: ArrayLike, alpha: float) -> np.ndarray:
    """Causal EMA of a sequence, `ema_step` applied frame by frame (α = 1 is the identity)."""
    check_smoothing(alpha)
    values = np.asarray(x, dtype=np.float64).reshape(-1)
    out = np.empty(values.size, dtype=np.float64)
    acc: Optional[float] = None
    for i, v in enumerate(values):
        acc = ema_step(acc, float(v), alpha)
        out[i] = acc
    return out


# ---------------------------------------------------------------------------------- thresholds
def fit_threshold(smoothed: np.ndarray, target: float = DEFAULT_TARGET, off_factor: float = DEFAULT_OFF_FACTOR) -> dict:
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
    return {
        "on": on,
        "off": off,
        "policy": "false_alarm_rate",
        "target": float(target),
        "off_target": float(min(0.5, off_factor * target)),
    }


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
        return {
            "frames": self.frames,
            "videos": self.videos,
            "smoothing": self.smoothing,
            "threshold": self.threshold,
            "fused_quantiles": self.fused_quantiles,
            "stats": {k: asdict(v) for k, v in self.stats.items()},
        }


def calibrate_scores(
    videos: Iterable[Mapping[str, np.ndarray]],
    signs: Mapping[str, int],
    weights: Mapping[str, float],
    *,
    target: float = DEFAULT_TARGET,
    smoothing: float = DEFAULT_SMOOTHING,
    off_factor: float = DEFAULT_OFF_FACTOR,
) -> ScoreCalibration:
    """Fit statistics and threshold on per-video score components of normal footage (one dict per video)."""
    videos = [v for v in videos if v and next(iter(v.values())).size]
    if not videos:
        raise DataError("score calibration got no scored frames (videos shorter than one clip?)")
    names = set(signs)
    for v in videos:
        if set(v) != names:
            raise ConfigError(f"score components {sorted(v)} do not match the model's {sorted(names)}")
    check_smoothing(smoothing)
    stats = fit_stats(videos)
    smoothed = np.concatenate([ema(fuse(v, signs, weights, stats), smoothing) for v in videos])
    threshold = fit_threshold(smoothed, target, off_factor)
    qs = {f"q{q:g}": float(np.quantile(smoothed, q / 100)) for q in (50, 90, 99, 99.9)}
    return ScoreCalibration(stats, float(smoothing), threshold, int(smoothed.size), len(videos), qs)


# ---------------------------------------------------------------------------------- events
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


# ---------------------------------------------------------------------------------- recipe + scorer
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
        numbers = [
            ("smoothing", self.smoothing),
            ("threshold on", self.on),
            ("threshold off", self.off),
            *((f"weight of '{k}'", v) for k, v in self.weights.items()),
            *((f"calibration of '{k}'", x) for k, st in (self.calibration or {}).items() for x in st),
        ]
        for what, value in numbers:  # NaN compares false with everything: it would silence events
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{what} must be a finite number, got {value}")
        if set(self.signs) != set(self.weights):
            raise ConfigError(f"score signs {sorted(self.signs)} and weights {sorted(self.weights)} differ")
        check_smoothing(self.smoothing)
        if self.min_event_frames < 1:
            raise ConfigError(f"min_event_frames must be >= 1, got {self.min_event_frames}")
        if (self.on is None) != (self.off is None):
            raise ConfigError("threshold needs both 'on' and 'off' (or neither)")
        if self.on is not None and self.off is not None and self.off > self.on:
            raise ConfigError(f"threshold off ({self.off}) must not exceed on ({self.on})")
        for name, (_, scale) in (self.calibration or {}).items():
            if not scale > 0:
                raise ConfigError(f"calibration scale of '{name}' must be > 0, got {scale}")

    @property
    def has_threshold(self) -> bool:
        return self.on is not None

    @property
    def stats(self) -> Optional[dict[str, RobustStats]]:
        """The calibration as RobustStats (None when uncalibrated: components are fused raw)."""
        if self.calibration is None:
            return None
        return {k: RobustStats(float(loc), float(scale)) for k, (loc, scale) in self.calibration.items()}

    @classmethod
    def from_manifest(
        cls,
        score: ScoreSpec,
        *,
        threshold: float | tuple[float, float] | None = None,
        smoothing: Optional[float] = None,
        min_event_frames: Optional[int] = None,
        calibration: Optional[Mapping[str, RobustStats]] = None,
    ) -> ScoreRecipe:
        """Build from a manifest's `score` section; explicit arguments override the bundle's values.

        `threshold` may be one number (then off = on, no hysteresis) or (on, off); `calibration`
        replaces the bundle's per-component statistics.
        """
        calib_pairs: Optional[dict[str, tuple[float, float]]]
        if calibration is not None:
            calib_pairs = {k: (float(v.location), float(v.scale)) for k, v in calibration.items()}
        else:
            calib_pairs = (
                {k: (s.location, s.scale) for k, s in score.calibration.items()} if score.calibration else None
            )
        on = off = None
        if threshold is not None:
            on, off = (threshold, threshold) if isinstance(threshold, (int, float)) else tuple(threshold)
        elif score.threshold is not None:
            on, off = score.threshold.on, score.threshold.off
        return cls(
            signs=dict(score.signs),
            weights=dict(score.weights),
            calibration=calib_pairs,
            smoothing=float(smoothing if smoothing is not None else score.smoothing),
            on=None if on is None else float(on),
            off=None if off is None else float(off),
            min_event_frames=int(min_event_frames if min_event_frames is not None else score.min_event_frames),
        )

    def fuse(self, components: Mapping[str, float]) -> float:
        """One frame's fused score (`fuse` with this recipe's signs, weights and calibration)."""
        return float(fuse(components, self.signs, self.weights, self.stats))


class CausalScorer:
    """Per-stream scorer: fuse → EMA → EventTracker. `update` is called once per scored frame."""

    def __init__(self, recipe: ScoreRecipe, stream: str) -> None:
        self.recipe = recipe
        self.stream = stream
        self._stats = recipe.stats
        self._ema: Optional[float] = None
        self.tracker = (
            EventTracker(stream, recipe.on, recipe.off, recipe.min_event_frames)
            if recipe.on is not None and recipe.off is not None
            else None
        )

    def update(
        self, frame: int, t: float, components: Mapping[str, float]
    ) -> tuple[float, float, bool, Optional[Event], Optional[Event]]:
        """(smoothed score, fused raw score, is_anomaly, event confirmed, event closed)."""
        r = self.recipe
        raw = float(fuse(components, r.signs, r.weights, self._stats))
        self._ema = ema_step(self._ema, raw, r.smoothing)
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
