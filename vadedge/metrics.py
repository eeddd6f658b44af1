"""Score post-processing and detection metrics (numpy; AUC/EER via scikit-learn, imported lazily)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._optional import require


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min) over the whole array (the papers' per-video normalisation; not causal).

    A constant array maps to zeros rather than NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    lo, hi = x.min(), x.max()
    return np.zeros_like(x) if hi - lo <= 0 else (x - lo) / (hi - lo)


@dataclass(frozen=True)
class RobustStats:
    """Location and scale of one score component on normal footage (median, 1.4826·MAD)."""

    location: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> "RobustStats":
        v = np.asarray(values, dtype=np.float64)
        med = float(np.median(v))
        mad = float(np.median(np.abs(v - med))) * 1.4826
        if mad <= 1e-12:  # degenerate (constant) input: fall back to std, then 1
            mad = float(v.std()) or 1.0
        return cls(med, mad)

    def z(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.location) / self.scale


def ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """Causal exponential moving average y_t = α x_t + (1 − α) y_{t−1}; α = 1 is the identity."""
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]")
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    acc = x[0] if len(x) else 0.0
    for i, v in enumerate(x):
        acc = alpha * v + (1 - alpha) * acc
        y[i] = acc
    return y


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
