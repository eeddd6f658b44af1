"""A score-over-time PNG drawn with OpenCV only (the runtime does not depend on matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .results import Event


def plot_scores(
    path: str | Path,
    frames: Sequence[int],
    scores: Sequence[Optional[float]],
    *,
    threshold: Optional[float] = None,
    labels: Optional[np.ndarray] = None,
    events: Sequence[Event] = (),
    title: str = "",
    size: tuple[int, int] = (960, 360),
) -> Path:
    """Write the per-frame score curve; ground-truth anomalies shaded red, detected events as bars."""
    w, h = size
    left, right, top, bottom = 60, 20, 50, 46
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - left - right, h - top - bottom
    n_frames = max(max(frames, default=0) + 1, len(labels) if labels is not None else 0, 2)
    x = lambda f: int(left + f / (n_frames - 1) * pw)  # noqa: E731
    vals = [s for s in scores if s is not None and math.isfinite(s)]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    pad = 0.05 * max(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    y = lambda v: int(top + (hi - v) / (hi - lo) * ph)  # noqa: E731
    if labels is not None:
        for f, lab in enumerate(np.asarray(labels).tolist()):
            if lab:
                cv2.rectangle(img, (x(f), top), (max(x(f + 1) - 1, x(f)), top + ph), (205, 205, 250), -1)
    for e in events:
        end = e.end_frame if e.end_frame is not None else n_frames - 1
        cv2.rectangle(img, (x(e.start_frame), top + ph + 6), (x(end), top + ph + 14), (0, 0, 200), -1)
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        cv2.line(img, (left - 4, y(v)), (left, y(v)), (0, 0, 0), 1)
        cv2.putText(img, f"{v:.1f}", (4, y(v) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(6):
        f = int(round((n_frames - 1) * i / 5))
        cv2.putText(img, str(f), (x(f) - 10, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if threshold is not None:
        cv2.line(img, (left, y(threshold)), (left + pw, y(threshold)), (0, 140, 255), 1, cv2.LINE_AA)
    pts = [(x(f), y(s)) for f, s in zip(frames, scores) if s is not None and math.isfinite(s)]
    if len(pts) > 1:
        cv2.polylines(img, [np.array(pts, np.int32)], False, (160, 60, 0), 2, cv2.LINE_AA)
    legend = "score (blue), threshold (orange), ground truth (shaded), events (red bars)"
    cv2.putText(
        img, title or "anomaly score per frame", (left, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA
    )
    cv2.putText(img, legend, (left, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path
