"""Score calibration for the runtime's causal normaliser (docs/design.md §5).

The statistics, fusion, smoothing and threshold policy are implemented once, in `vadedge.scoring`
(re-exported here for the exporter and other callers of this module's public names); this module
adds `score_footage`, which produces the per-video score components of normal footage by running
the exported graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from vadedge.progress import progress_bar
from vadedge.scoring import (
    DEFAULT_OFF_FACTOR,
    DEFAULT_SMOOTHING,
    DEFAULT_TARGET,
    ScoreCalibration,
    calibrate_scores,
    fit_threshold,
)

__all__ = [
    "DEFAULT_OFF_FACTOR",
    "DEFAULT_SMOOTHING",
    "DEFAULT_TARGET",
    "ScoreCalibration",
    "calibrate_scores",
    "fit_threshold",
    "score_footage",
    "score_videos",
]


def score_footage(
    stream, footage, spec, state: dict[str, np.ndarray], *, max_videos: Optional[int] = None, progress: bool = False
) -> list[dict[str, np.ndarray]]:
    """Score components of every video of `footage` (a Split) through a `StreamRunner`, state carried per video."""
    from .footage import iter_videos

    videos = [frames for _, frames in iter_videos(footage, spec, stream.clip_length, max_videos)]
    return score_videos(stream, videos, state, progress=progress)


def score_videos(
    stream, videos: Sequence[np.ndarray], state: dict[str, np.ndarray], *, progress: bool = False
) -> list[dict[str, np.ndarray]]:
    """Score components of each preprocessed video (uint8 (T, H, W, C)), each a fresh stream from `state`."""
    return [
        stream.score_frames(frames, state)
        for frames in progress_bar(videos, total=len(videos), desc="score calibration", enabled=progress)
    ]
