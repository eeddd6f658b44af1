"""Normal footage for calibration: a dataset root (its `training` split), a folder of videos, or one video.

Accepted layouts for `--calib-data DIR`:
  DIR/training/frames/<video>/<n>.jpg (or DIR/training/<video files>)  — a dataset root, training split
  DIR/<video>/<n>.jpg or DIR/<video files>                             — a folder of normal videos
  DIR/<n>.jpg                                                          — a single video as frames
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Optional, Union

import numpy as np

from vadedge.datasets import Split, Video, _discover_videos, list_frame_files, open_split
from vadedge.errors import DataError
from vadedge.preprocess import InputSpec


def open_normal_footage(path: Union[str, Path]) -> Split:
    """The normal videos under `path` (see the module docstring); DataError if there are none."""
    root = Path(path)
    if not root.exists():
        raise DataError(f"calibration data {root} does not exist")
    if not root.is_dir():
        raise DataError(f"calibration data {root} is not a folder")
    if (root / "training").is_dir():
        return open_split(root, "training")
    videos = _discover_videos(root)
    if not videos:
        frames = list_frame_files(root)
        if not frames:
            raise DataError(
                f"calibration folder {root} is empty: expected a dataset root with training/, "
                f"video sub-folders, video files or image frames"
            )
        videos = [Video(root.name, root, frames)]
    return Split(root, "calibration", videos)


def iter_videos(
    split: Split, spec: InputSpec, clip_length: int, max_videos: Optional[int] = None
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, uint8 frames (T, H, W, C)) for each video long enough for one clip."""
    usable = 0
    for video in split.videos[:max_videos]:
        frames = video.load(spec)
        if len(frames) >= clip_length:
            usable += 1
            yield video.name, frames
    if usable == 0:
        raise DataError(f"no video in {split.root} has the {clip_length} frames one clip needs")
