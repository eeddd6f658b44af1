"""Detection metrics (numpy; AUC/EER via scikit-learn, imported lazily) and the papers' min-max normalisation.

Robust statistics, fusion and smoothing live in `vadedge.scoring`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from ._optional import require


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min) over the whole array (the papers' per-video normalisation; not causal).

    A constant array maps to zeros rather than NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(), x.max()
    return np.zeros_like(x) if hi - lo <= 0 else (x - lo) / (hi - lo)


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(int).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    return labels, scores


def has_both_classes(labels: np.ndarray) -> bool:
    labels = np.asarray(labels)
    return bool(labels.size) and 0 < labels.sum() < labels.size


def frame_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Frame-level ROC AUC with anomalous = positive and higher score = more anomalous."""
    labels, scores = _check(labels, scores)
    if not has_both_classes(labels):
        return float("nan")
    return float(require("sklearn.metrics").roc_auc_score(labels, scores))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """EER: the error rate where the false-positive rate equals the miss rate (interpolated on the ROC)."""
    labels, scores = _check(labels, scores)
    if not has_both_classes(labels):
        return float("nan")
    fpr, tpr, _ = require("sklearn.metrics").roc_curve(labels, scores)
    fnr = 1 - tpr
    diff = fpr - fnr  # increasing along the curve from −1 to +1
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(fpr[0])
    x0, x1 = diff[i - 1], diff[i]
    w = 0.0 if x1 == x0 else -x0 / (x1 - x0)
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of true values as inclusive (first, last) index pairs."""
    m = np.asarray(mask, dtype=bool).reshape(-1).astype(np.int8)
    edges = np.diff(np.concatenate([[0], m, [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), (np.flatnonzero(edges == -1) - 1).tolist()))


def alarm_metrics(videos: Sequence[tuple[str, np.ndarray, np.ndarray, int]], fps: float) -> dict:
    """False alarms per hour of normal footage and detection delay per anomalous interval.

    `videos`: (name, labels, flags, first) per video; `labels` (1 = anomalous) and `flags` (the
    detector's is_anomaly) cover every frame of the video, `first` is the first scored frame (the
    frames before it are warm-up and never flagged). An *alarm* is a maximal run of flagged frames;
    it is *false* when it contains no anomalous frame. Normal footage = the scored frames labelled 0.
    An *anomalous interval* is a maximal run of anomalous frames; its delay is the number of frames
    from its first frame to the first flagged frame inside it (0 = flagged on its first frame), or
    None (missed) when no frame of it is flagged. Seconds = frames / fps.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    false_alarms = alarms = normal_frames = 0
    intervals = []
    for name, labels, flags, first in videos:
        labels = np.asarray(labels).astype(bool).reshape(-1)
        flags = np.asarray(flags, dtype=bool).reshape(-1)
        if labels.shape != flags.shape:
            raise ValueError(f"video {name}: {labels.size} labels but {flags.size} flags")
        normal_frames += int((~labels[first:]).sum())
        for a, b in runs(flags):
            alarms += 1
            false_alarms += int(not labels[a : b + 1].any())
        for a, b in runs(labels):
            hit = np.flatnonzero(flags[a : b + 1])
            delay = int(hit[0]) if hit.size else None
            intervals.append(
                {
                    "video": name,
                    "start": a,
                    "end": b,
                    "delay_frames": delay,
                    "delay_s": None if delay is None else delay / fps,
                }
            )
    normal_s = normal_frames / fps
    delays = np.array([i["delay_frames"] for i in intervals if i["delay_frames"] is not None], dtype=np.float64)

    def stat(fn) -> Optional[float]:
        return float(fn(delays)) if delays.size else None

    return {
        "fps": float(fps),
        "alarms": alarms,
        "false_alarms": false_alarms,
        "normal_frames": normal_frames,
        "normal_seconds": normal_s,
        "false_alarms_per_hour": false_alarms / normal_s * 3600 if normal_frames else float("nan"),
        "intervals": len(intervals),
        "detected": int(delays.size),
        "missed": len(intervals) - int(delays.size),
        "delay_frames_mean": stat(np.mean),
        "delay_frames_median": stat(np.median),
        "delay_frames_max": stat(np.max),
        "delay_s_mean": None if not delays.size else float(np.mean(delays)) / fps,
        "delay_s_median": None if not delays.size else float(np.median(delays)) / fps,
        "per_interval": intervals,
    }
