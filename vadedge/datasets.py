"""Readers for video-anomaly datasets: `<root>/{training,testing}/frames/<video>/<n>.jpg`, video files, labels.

Labels come from `<root>/labels.json` (per-video 1-based inclusive anomalous intervals, the format of
`../shared/datasets/ped2`) or a flat `frame_labels_*.npy` over the sorted test videos (MNAD's form).
Only numpy and OpenCV are needed, so the runtime can use the same reader for frame-folder sources.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .errors import DataError
from .preprocess import InputSpec, prepare_frame

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg"}


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def list_frame_files(folder: Path) -> list[Path]:
    """Image files of a frames folder in frame order (numeric order of the digits in the names)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    return sorted(files, key=_natural_key)


def read_image(path: Path) -> np.ndarray:
    """Decode one frame as BGR uint8; a clear DataError if it is missing or not an image."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot read frame {path} (missing, empty or not an image)")
    return img


@dataclass
class Video:
    """One video: a folder of frames or a video file, with optional per-frame labels (1 = anomalous)."""

    name: str
    source: Path
    frame_files: Optional[list[Path]] = None  # None for a video file
    labels: Optional[np.ndarray] = None
    _num_frames: Optional[int] = field(default=None, repr=False)

    @property
    def is_file(self) -> bool:
        return self.frame_files is None

    @property
    def num_frames(self) -> int:
        if self.frame_files is not None:
            return len(self.frame_files)
        if self._num_frames is None:  # decode once: container frame counts are unreliable
            self._num_frames = sum(1 for _ in self.iter_frames())
        return self._num_frames

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Yield BGR uint8 frames in order."""
        if self.frame_files is not None:
            for path in self.frame_files:
                yield read_image(path)
            return
        cap = cv2.VideoCapture(str(self.source))
        if not cap.isOpened():
            raise DataError(f"cannot open video file {self.source}")
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield frame
        finally:
            cap.release()

    def read_frame(self, index: int) -> np.ndarray:
        """Random access to one frame (frame folders only; video files are read sequentially)."""
        if self.frame_files is None:
            raise DataError(f"{self.source} is a video file: read it with iter_frames() or load()")
        return read_image(self.frame_files[index])

    def load(self, spec: InputSpec) -> np.ndarray:
        """All frames preprocessed for `spec`: uint8 array (N, H, W, C)."""
        frames = [prepare_frame(f, spec) for f in self.iter_frames()]
        if not frames:
            raise DataError(f"video {self.source} has no frames")
        if self.frame_files is None:
            self._num_frames = len(frames)
        return np.stack(frames)


@dataclass
class Split:
    """The videos of one split (`training` or `testing`) of a dataset root."""

    root: Path
    name: str
    videos: list[Video]

    @property
    def has_labels(self) -> bool:
        return all(v.labels is not None for v in self.videos)

    @property
    def num_frames(self) -> int:
        return sum(v.num_frames for v in self.videos)


def _discover_videos(folder: Path) -> list[Video]:
    videos: list[Video] = []
    for entry in sorted(folder.iterdir(), key=_natural_key):
        if entry.is_dir():
            files = list_frame_files(entry)
            if not files:
                raise DataError(f"video folder {entry} contains no image frames")
            videos.append(Video(entry.name, entry, files))
        elif entry.is_file() and entry.suffix.lower() in VIDEO_EXTS:
            videos.append(Video(entry.stem, entry, None))
    return videos


def _split_folder(root: Path, split: str) -> Path:
    """Where a split's videos live; accepts `<root>/<split>/frames`, `<root>/<split>/videos` or `<root>/<split>`."""
    base = root / split
    for cand in (base / "frames", base / "videos", base):
        if cand.is_dir():
            return cand
    raise DataError(f"dataset folder {root} has no '{split}' split (expected {base}/frames/<video>/...)")


def _labels_from_json(path: Path, videos: Sequence[Video]) -> None:
    try:
        data = json.loads(path.read_text())
        intervals = data["anomalous_intervals"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read labels from {path}: {exc}") from exc
    expected = data.get("frames_per_video", {})
    for video in videos:
        if video.name not in intervals:
            raise DataError(f"labels file {path} has no entry for video '{video.name}'")
        n = video.num_frames
        if video.name in expected and int(expected[video.name]) != n:
            raise DataError(
                f"labels file {path} says video '{video.name}' has {expected[video.name]} frames, "
                f"but {video.source} has {n}"
            )
        lab = np.zeros(n, dtype=np.uint8)
        for first, last in intervals[video.name]:
            if not (1 <= first <= last <= n):
                raise DataError(
                    f"labels file {path}: interval [{first}, {last}] of video "
                    f"'{video.name}' lies outside its {n} frames"
                )
            lab[first - 1 : last] = 1
        video.labels = lab


def _labels_from_npy(path: Path, videos: Sequence[Video]) -> None:
    try:
        flat = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read labels from {path}: {exc}") from exc
    flat = np.asarray(flat).reshape(-1).astype(np.uint8)
    total = sum(v.num_frames for v in videos)
    if flat.size != total:
        raise DataError(f"labels file {path} has {flat.size} frame labels but the test videos have {total} frames")
    offset = 0
    for video in videos:
        video.labels = flat[offset : offset + video.num_frames].copy()
        offset += video.num_frames


def find_labels_file(root: Path) -> Optional[Path]:
    """labels.json if present, else a single frame_labels_*.npy, else None."""
    if (root / "labels.json").is_file():
        return root / "labels.json"
    npys = sorted(root.glob("frame_labels_*.npy"))
    if len(npys) > 1:
        raise DataError(f"several label files in {root}: {[p.name for p in npys]}; keep one")
    return npys[0] if npys else None


def open_split(
    root: str | Path, split: str = "training", *, require_labels: bool = False, labels: str | Path | None = None
) -> Split:
    """Open `split` of a dataset root; test splits get their labels attached when a labels file exists."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a folder")
    folder = _split_folder(root, split)
    videos = _discover_videos(folder)
    if not videos:
        raise DataError(f"no videos in {folder} (expected sub-folders of frames or video files)")
    label_path = Path(labels) if labels else (find_labels_file(root) if split != "training" else None)
    if label_path is not None:
        if not label_path.is_file():
            raise DataError(f"labels file {label_path} does not exist")
        if label_path.suffix == ".json":
            _labels_from_json(label_path, videos)
        else:
            _labels_from_npy(label_path, videos)
    elif require_labels:
        raise DataError(f"no labels for {root}/{split}: expected {root}/labels.json or frame_labels_*.npy")
    return Split(root, split, videos)
