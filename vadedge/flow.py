"""Optical-flow providers: dense flow from classical OpenCV methods, numpy in and out (no torch).

MAAM-Net's motion branch is trained to predict the optical flow of its input frame, and its score
compares that prediction with the flow a provider computes from the live frames. The papers used
FlowNet2, which is far heavier than the model itself; here flow comes from a provider named in the
model config, so a model is trained and run with the same one (the score distribution depends on
it). The runtime, the trainer and the evaluator all call the same code.

Convention (every provider): `flow(prev, curr)` is the **velocity field of `curr`** on `curr`'s
pixel grid, in pixels per frame at the frame's resolution: channel 0 = horizontal (+ right),
channel 1 = vertical (+ down), so that curr(x) ≈ prev(x − v(x)). It is computed as the negated
backward flow (curr → prev), which keeps the flow aligned with the frame being scored — the
appearance and motion error maps of PSCD then point at the same pixels.

Providers (pick with `get_flow_provider(name, **params)` or a config dict {"name": ..., ...}):

* ``dis`` — OpenCV's DIS optical flow (Kroeger et al., ECCV 2016), the default: preset
  ``ultrafast`` / ``fast`` / ``medium``; ``finest_scale`` overrides the preset's finest pyramid
  level (0 = full resolution). Default: ``ultrafast`` at ``finest_scale=1``. Measured on a
  pedestrian-sized blob at 128×128 (docs/models/maam-net.md), the ``fast`` / ``medium`` presets'
  variational refinement smooths small objects' flow away (a 1 px/frame walker reads 0.3–0.6
  px/frame), while ultrafast at half resolution reads 0.93 and costs a quarter as much.
* ``farneback`` — OpenCV's Farnebäck polynomial-expansion flow, the second choice (smoother,
  slower; parameters as in cv2.calcOpticalFlowFarneback).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import cv2
import numpy as np

from .errors import ConfigError, DataError

FlowConfig = Union[str, dict]

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def to_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 (H, W), (H, W, 1) or (H, W, 3) -> uint8 (H, W); colour frames use the channel mean.

    The mean does not depend on the channel order, so RGB and BGR models get the same flow.
    """
    if frame.dtype != np.uint8:
        raise DataError(f"flow providers take uint8 frames, got {frame.dtype}")
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0]
    if frame.ndim == 3 and frame.shape[2] == 3:
        return (frame.astype(np.uint16).sum(axis=2, dtype=np.uint16) // 3).astype(np.uint8)
    raise DataError(f"flow providers take (H, W[, 1|3]) frames, got shape {frame.shape}")


class FlowProvider:
    """Base class: subclasses implement `_backward(curr_gray, prev_gray) -> (H, W, 2) float32`."""

    name: str = ""

    def __call__(self, prev: np.ndarray, curr: np.ndarray) -> np.ndarray:
        """Velocity field of `curr` since `prev`: float32 (H, W, 2), pixels per frame (see module doc)."""
        p, c = np.ascontiguousarray(to_gray(prev)), np.ascontiguousarray(to_gray(curr))
        if p.shape != c.shape:
            raise DataError(f"flow needs two frames of one size, got {p.shape} and {c.shape}")
        flow = self._backward(c, p)
        return np.negative(flow, out=flow)

    def clip_flow(self, frames: np.ndarray) -> np.ndarray:
        """Flow between consecutive frames of uint8 clips (..., N, H, W, C) -> float32 (..., N−1, H, W, 2)."""
        frames = np.asarray(frames)
        if frames.ndim < 4 or frames.shape[-3] < 1:
            raise DataError(f"clip_flow takes uint8 (..., N, H, W, C) clips, got shape {frames.shape}")
        lead, (n, h, w) = frames.shape[:-4], frames.shape[-4:-1]
        flat = frames.reshape(-1, n, *frames.shape[-3:])
        out = np.empty((flat.shape[0], max(n - 1, 0), h, w, 2), np.float32)
        for b in range(flat.shape[0]):
            for t in range(1, n):
                out[b, t - 1] = self(flat[b, t - 1], flat[b, t])
        return out.reshape(*lead, max(n - 1, 0), h, w, 2)

    def video_flow(self, frames: np.ndarray) -> np.ndarray:
        """Flow of every frame after the first of one video (N, H, W, C) -> (N−1, H, W, 2)."""
        return self.clip_flow(frames)

    def config(self) -> dict:
        """The dict that rebuilds this provider with `get_flow_provider` (stored in model configs)."""
        raise NotImplementedError

    def _backward(self, curr: np.ndarray, prev: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # OpenCV algorithm objects do not pickle: rebuild them lazily in DataLoader workers.
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_algo"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class DISFlow(FlowProvider):
    """OpenCV DIS optical flow: a preset, optionally with a finer `finest_scale` for small frames."""

    name = "dis"

    def __init__(self, preset: str = "ultrafast", finest_scale: Optional[int] = 1) -> None:
        if preset not in _DIS_PRESETS:
            raise ConfigError(f"DIS preset must be one of {sorted(_DIS_PRESETS)}, got {preset!r}")
        if finest_scale is not None and not (0 <= int(finest_scale) <= 4):
            raise ConfigError(f"DIS finest_scale must be in 0..4, got {finest_scale}")
        self.preset = preset
        self.finest_scale = None if finest_scale is None else int(finest_scale)
        self._algo: Any = None

    def _backward(self, curr: np.ndarray, prev: np.ndarray) -> np.ndarray:
        if getattr(self, "_algo", None) is None:
            algo = cv2.DISOpticalFlow.create(_DIS_PRESETS[self.preset])
            if self.finest_scale is not None:
                algo.setFinestScale(self.finest_scale)
            self._algo = algo
        return self._algo.calc(curr, prev, None)

    def config(self) -> dict:
        return {"name": self.name, "preset": self.preset, "finest_scale": self.finest_scale}


@dataclass
class FarnebackFlow(FlowProvider):
    """OpenCV Farnebäck flow (cv2.calcOpticalFlowFarneback) with its usual parameters."""

    pyr_scale: float = 0.5
    levels: int = 3
    winsize: int = 15
    iterations: int = 3
    poly_n: int = 5
    poly_sigma: float = 1.2
    name: str = field(default="farneback", init=False)

    def _backward(self, curr: np.ndarray, prev: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(
            curr,
            prev,
            None,
            self.pyr_scale,
            self.levels,
            self.winsize,
            self.iterations,
            self.poly_n,
            self.poly_sigma,
            0,
        )

    def config(self) -> dict:
        return {
            "name": self.name,
            "pyr_scale": self.pyr_scale,
            "levels": self.levels,
            "winsize": self.winsize,
            "iterations": self.iterations,
            "poly_n": self.poly_n,
            "poly_sigma": self.poly_sigma,
        }


_PROVIDERS: dict[str, Callable[..., FlowProvider]] = {"dis": DISFlow, "farneback": FarnebackFlow}


def list_flow_providers() -> list[str]:
    return sorted(_PROVIDERS)


def get_flow_provider(spec: FlowConfig = "dis", **params: Any) -> FlowProvider:
    """A provider from a name ("dis", "farneback") or a config dict {"name": ..., **params}."""
    if isinstance(spec, dict):
        params = {**{k: v for k, v in spec.items() if k != "name"}, **params}
        spec = spec.get("name", "")
    if spec not in _PROVIDERS:
        raise ConfigError(f"unknown flow provider {spec!r}; available: {', '.join(list_flow_providers())}")
    try:
        return _PROVIDERS[spec](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for flow provider {spec!r}: {exc}") from exc


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """Per-pixel speed |v| of a (…, H, W, 2) flow field."""
    return np.sqrt((np.asarray(flow, dtype=np.float32) ** 2).sum(-1))


def benchmark(provider: FlowProvider, frames: np.ndarray, repeats: int = 3) -> float:
    """Median over `repeats` passes of the mean milliseconds per frame pair on uint8 frames (N, H, W[, C])."""
    import time

    passes = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for t in range(1, len(frames)):
            provider(frames[t - 1], frames[t])
        passes.append((time.perf_counter() - t0) * 1e3 / max(len(frames) - 1, 1))
    return float(np.median(passes))


BENCH_CONFIGS = (
    {"name": "dis"},
    {"name": "dis", "preset": "fast", "finest_scale": None},
    {"name": "dis", "preset": "medium", "finest_scale": None},
    {"name": "dis", "preset": "medium", "finest_scale": 0},
    {"name": "farneback"},
)


def _main(argv: Optional[list] = None) -> None:
    """`python -m vadedge.flow FRAMES_DIR [--size 128 256] [--frames 60] [--threads 1]`: cost per frame."""
    import argparse
    from pathlib import Path

    from .datasets import list_frame_files, read_image

    ap = argparse.ArgumentParser(prog="python -m vadedge.flow", description=_main.__doc__)
    ap.add_argument("frames_dir", type=Path, help="a folder of frames (e.g. ped2/testing/frames/01)")
    ap.add_argument("--size", type=int, nargs="+", default=[128, 256], help="square sizes to resize to")
    ap.add_argument("--frames", type=int, default=60, help="frames to use")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    raw = [read_image(p) for p in list_frame_files(args.frames_dir)[: args.frames]]
    print(f"{len(raw)} frames from {args.frames_dir}, OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    for size in args.size:
        frames = np.stack(
            [cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), (size, size), interpolation=cv2.INTER_AREA) for f in raw]
        )
        for cfg in BENCH_CONFIGS:
            p = get_flow_provider(cfg)
            p(frames[0], frames[1])  # warm-up (allocations)
            print(f"{size}x{size}  {str(p.config()):75s} {benchmark(p, frames, args.repeats):7.2f} ms/frame")


if __name__ == "__main__":
    _main()
