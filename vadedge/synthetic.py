"""A deterministic synthetic fixed-camera scene with labelled anomalies, written in the Ped2 layout.

Normal: small "pedestrians" walk up or down a walkway at walking speed. Anomalies (test videos
only): an object that is too fast, one that crosses the walkway sideways, or one of an unusual
shape and size (a large box, like a car on a footpath). Frames go to
`<root>/{training,testing}/frames/<NN>/<iii>.jpg` with `<root>/labels.json` in the same format as
`../shared/datasets/ped2/labels.json`, so every reader and test works on it with no external data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

ANOMALY_KINDS = ("speed", "direction", "shape")


@dataclass
class _Walker:
    x: float
    y: float
    vx: float
    vy: float
    w: float
    h: float
    color: tuple
    kind: str = "normal"  # or an anomaly kind
    box: bool = False


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured static scene: grass-like noise, a lighter walkway band, a few fixed 'benches'."""
    noise: np.ndarray = rng.normal(0, 1, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    noise = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)[:h, :w]
    fine = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 1.0)
    base = np.empty((h, w, 3), np.float32)
    base[:] = (70, 120, 80)  # BGR grass
    x0, x1 = int(w * 0.30), int(w * 0.70)
    base[:, x0:x1] = (150, 155, 160)  # walkway
    img = base + 18 * noise + 10 * fine
    for _ in range(3):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if x0 - 6 < cx < x1 + 6:
            cx = x0 - 10 if cx < w // 2 else x1 + 10
        cv2.rectangle(img, (cx - 5, cy - 3), (cx + 5, cy + 3), (60, 60, 90), -1)
    return np.clip(img, 0, 255)


class SceneGenerator:
    """Renders one video of the scene; `anomaly` adds an abnormal object between two frame indices."""

    def __init__(self, height: int = 96, width: int = 128, seed: int = 0) -> None:
        self.h, self.w = height, width
        scene_rng = np.random.default_rng(seed)  # the scene itself is shared by all videos of a seed
        self.background = _background(scene_rng, height, width)
        self.walk_x = (int(width * 0.30), int(width * 0.70))
        self.scale = height / 96.0

    def _spawn(self, rng: np.random.Generator) -> _Walker:
        s = self.scale
        x = rng.uniform(self.walk_x[0] + 4 * s, self.walk_x[1] - 4 * s)
        down = rng.random() < 0.5
        speed = rng.uniform(0.7, 1.2) * s
        y = -8 * s if down else self.h + 8 * s
        shade = int(rng.integers(20, 90))
        return _Walker(
            x,
            y,
            rng.normal(0, 0.05) * s,
            speed if down else -speed,
            rng.uniform(3.0, 4.0) * s,
            rng.uniform(7.0, 9.0) * s,
            (shade, shade, shade + 30),
        )

    def _anomalous(self, rng: np.random.Generator, kind: str) -> _Walker:
        s = self.scale
        w = self._spawn(rng)
        w.kind = kind
        w.color = (30, 40, 200)
        if kind == "speed":
            w.vy *= 4.0
        elif kind == "direction":
            w.x, w.y = -8 * s, rng.uniform(0.3, 0.7) * self.h
            w.vx, w.vy = rng.uniform(1.2, 1.6) * s, 0.0
        elif kind == "shape":
            w.w, w.h, w.box = 12 * s, 9 * s, True
            w.color = (40, 40, 40)
        return w

    def _draw(self, img: np.ndarray, o: _Walker) -> None:
        c = (int(round(o.x)), int(round(o.y)))
        if o.box:
            cv2.rectangle(img, (int(o.x - o.w), int(o.y - o.h)), (int(o.x + o.w), int(o.y + o.h)), o.color, -1)
            cv2.rectangle(img, (int(o.x - o.w), int(o.y - o.h)), (int(o.x + o.w), int(o.y + o.h)), (200, 200, 200), 1)
        else:
            axes = (max(1, int(round(o.w))), max(1, int(round(o.h))))
            cv2.ellipse(img, c, axes, 0, 0, 360, o.color, -1)
            cv2.circle(img, (c[0], int(o.y - o.h)), max(1, axes[0] - 1), (150, 170, 200), -1)

    def _visible(self, o: _Walker) -> bool:
        return -o.w <= o.x <= self.w + o.w and -o.h <= o.y <= self.h + o.h

    def render(
        self, num_frames: int, seed: int, anomaly: Optional[str] = None, anomaly_start: int = 0, rate: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames (N, H, W, 3) BGR uint8 and labels (N,) uint8 — 1 while the abnormal object is in view.

        `rate` renders the same scene as a camera `rate` times faster would see it: objects move
        1/rate as far between frames and new walkers appear 1/rate as often per frame (a dataset's
        10 fps at rate 1 becomes 30 fps at rate 3; sensor noise stays per frame).
        """
        if rate < 1:
            raise ValueError("rate must be an integer >= 1")
        if anomaly is not None and anomaly not in ANOMALY_KINDS:
            raise ValueError(f"anomaly must be one of {ANOMALY_KINDS}")
        rng = np.random.default_rng(seed)
        walkers = [self._spawn(rng) for _ in range(3)]
        for w in walkers:  # start inside the frame
            w.y = rng.uniform(0, self.h)
        frames = np.empty((num_frames, self.h, self.w, 3), np.uint8)
        labels = np.zeros(num_frames, np.uint8)
        abnormal: Optional[_Walker] = None
        abnormal_seen = False
        for t in range(num_frames):
            if anomaly is not None and t == anomaly_start:
                abnormal = self._anomalous(rng, anomaly)
            if rng.random() < 0.04 * (4 - min(len(walkers), 4)) / rate:
                walkers.append(self._spawn(rng))
            img = self.background.copy()
            for w in walkers:
                self._draw(img, w)
            if abnormal is not None:
                if self._visible(abnormal):
                    self._draw(img, abnormal)
                    labels[t] = 1
                    abnormal_seen = True
                elif abnormal_seen:
                    abnormal = None
            img += rng.normal(0, 2.0, img.shape).astype(np.float32)  # sensor noise
            frames[t] = np.clip(img, 0, 255).astype(np.uint8)
            for w in walkers + ([abnormal] if abnormal is not None else []):
                w.x += w.vx / rate
                w.y += w.vy / rate
            walkers = [w for w in walkers if self._visible(w) or abs(w.y) < 12 * self.scale]
        return frames, labels


def iter_synthetic_videos(
    num_videos: int, num_frames: int, *, height: int = 96, width: int = 128, seed: int = 0, anomalous: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frames, labels) for `num_videos` videos of one scene; test videos cycle the anomaly kinds."""
    gen = SceneGenerator(height, width, seed)
    for i in range(num_videos):
        video_seed = seed * 1000 + (500 if anomalous else 0) + i
        if anomalous:
            kind = ANOMALY_KINDS[i % len(ANOMALY_KINDS)]
            start = int(np.random.default_rng(video_seed).integers(num_frames // 4, num_frames // 2))
            yield gen.render(num_frames, video_seed, kind, start)
        else:
            yield gen.render(num_frames, video_seed)


def generate_dataset(
    root: str | Path,
    *,
    train_videos: int = 4,
    test_videos: int = 3,
    frames_per_video: int = 60,
    height: int = 96,
    width: int = 128,
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset in the Ped2 layout (frames as JPEG, labels.json) and return its root."""
    root = Path(root)
    intervals: dict[str, list[list[int]]] = {}
    counts: dict[str, int] = {}
    for split, n, anomalous in (("training", train_videos, False), ("testing", test_videos, True)):
        videos = iter_synthetic_videos(n, frames_per_video, height=height, width=width, seed=seed, anomalous=anomalous)
        for i, (frames, labels) in enumerate(videos):
            name = f"{i + 1:02d}"
            out = root / split / "frames" / name
            out.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(frames):
                cv2.imwrite(str(out / f"{t:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if anomalous:
                counts[name] = len(frames)
                intervals[name] = _intervals(labels)
    labels_doc = {
        "format": "frame-level ground truth: for each test video, a list of [first, last] anomalous "
        "frame intervals, 1-based and inclusive, in the order of the sorted frame files",
        "generator": {"kind": "vadedge.synthetic", "seed": seed, "size": [height, width]},
        "frames_per_video": counts,
        "anomalous_intervals": intervals,
    }
    (root / "labels.json").write_text(json.dumps(labels_doc, indent=1))
    return root


def _intervals(labels: np.ndarray) -> list[list[int]]:
    """[first, last] 1-based inclusive runs of ones."""
    out, start = [], None
    for i, v in enumerate(labels.tolist() + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append([start + 1, i])
            start = None
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0) -> Path:
    """Write BGR frames to an MP4 (mp4v) or AVI (MJPG) file, chosen by the suffix."""
    path = Path(path)
    fourcc = cv2.VideoWriter.fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write video {path}")
    for f in frames:
        writer.write(f)
    writer.release()
    return path
