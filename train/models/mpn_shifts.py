"""Scene shifts: appearance/geometry changes that stand in for "a new camera" on single-scene data.

Ped2 is one scene, so MPN's meta-training episodes (and the few-shot experiment) simulate scene
changes by applying one shift, with one parameter draw, to every frame of an episode or a video.
Each shift maps uint8 frames (N, H, W, C) to uint8 frames of the same shape (the model's input
size), so it applies after `prepare_frame` and before the model, exactly where a new camera differs.

| kind                | parameters (training draw)                         | effect |
|---------------------|----------------------------------------------------|--------|
| none                | —                                                  | identity |
| crop                | side fraction f ~ U(0.7, 0.9), offsets ~ U(0, 1)   | zoom in: crop f·H × f·W, resize back |
| flip                | —                                                  | horizontal mirror |
| scale               | factor f ~ U(0.6, 0.85), offsets ~ U(0, 1)         | zoom out: shrink, pad by edge replication |
| brightness_contrast | brightness b ~ U(−40, 40), contrast c ~ U(0.6, 1.4) | (x − 128)·c + 128 + b, clipped |
| blur                | σ ~ U(0.8, 2.0) pixels of the model input          | Gaussian blur |
| noise               | σ ~ U(4, 12) grey levels, seed                     | additive Gaussian noise, fresh per frame |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vadedge.errors import ConfigError

SHIFT_KINDS = ("none", "crop", "flip", "scale", "brightness_contrast", "blur", "noise")

# Parameters when a shift is named without values (e.g. `--test-shift blur`).
DEFAULT_PARAMS: dict[str, tuple[float, ...]] = {
    "none": (),
    "flip": (),
    "crop": (0.8, 0.5, 0.5),
    "scale": (0.75, 0.5, 0.5),
    "brightness_contrast": (30.0, 1.3),
    "blur": (1.5,),
    "noise": (8.0, 0.0),
}


def _per_frame(frames: np.ndarray, fn) -> np.ndarray:
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        out[i] = fn(f).reshape(f.shape)  # OpenCV drops a single channel axis
    return out


@dataclass(frozen=True)
class Shift:
    """One scene shift with fixed parameters (see the module table); `apply` is deterministic."""

    kind: str
    params: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in SHIFT_KINDS:
            raise ConfigError(f"unknown shift {self.kind!r}; choose from {', '.join(SHIFT_KINDS)}")
        want = len(DEFAULT_PARAMS[self.kind])
        if len(self.params) != want:
            raise ConfigError(f"shift {self.kind!r} takes {want} parameters, got {len(self.params)}")

    def __str__(self) -> str:
        return self.kind + (":" + ",".join(f"{p:g}" for p in self.params) if self.params else "")

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) → uint8 (N, H, W, C)."""
        if frames.dtype != np.uint8 or frames.ndim != 4:
            raise ConfigError(f"shifts take uint8 frames (N, H, W, C), got {frames.dtype} {frames.shape}")
        k, p = self.kind, self.params
        h, w = frames.shape[1:3]
        if k == "none":
            return frames.copy()
        if k == "flip":
            return np.ascontiguousarray(frames[:, :, ::-1])
        if k == "crop":
            ch, cw = max(1, round(h * p[0])), max(1, round(w * p[0]))
            y0, x0 = round(p[1] * (h - ch)), round(p[2] * (w - cw))
            return _per_frame(
                frames,
                lambda f: cv2.resize(
                    np.ascontiguousarray(f[y0 : y0 + ch, x0 : x0 + cw]), (w, h), interpolation=cv2.INTER_LINEAR
                ),
            )
        if k == "scale":
            sh, sw = max(1, round(h * p[0])), max(1, round(w * p[0]))
            y0, x0 = round(p[1] * (h - sh)), round(p[2] * (w - sw))
            return _per_frame(
                frames,
                lambda f: cv2.copyMakeBorder(
                    cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA),
                    y0,
                    h - sh - y0,
                    x0,
                    w - sw - x0,
                    cv2.BORDER_REPLICATE,
                ),
            )
        if k == "brightness_contrast":
            x = (frames.astype(np.float32) - 128.0) * p[1] + 128.0 + p[0]
            return np.clip(np.rint(x), 0, 255).astype(np.uint8)
        if k == "blur":
            return _per_frame(frames, lambda f: cv2.GaussianBlur(f, (0, 0), p[0]))
        # noise
        rng = np.random.default_rng(int(p[1]))
        x = frames.astype(np.float32) + rng.normal(0.0, p[0], frames.shape).astype(np.float32)
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def sample_shift(kind: str, rng: np.random.Generator) -> Shift:
    """A random draw of `kind` from the training ranges of the module table."""
    u = rng.uniform
    draws = {
        "none": lambda: (),
        "flip": lambda: (),
        "crop": lambda: (u(0.7, 0.9), u(0, 1), u(0, 1)),
        "scale": lambda: (u(0.6, 0.85), u(0, 1), u(0, 1)),
        "brightness_contrast": lambda: (u(-40, 40), u(0.6, 1.4)),
        "blur": lambda: (u(0.8, 2.0),),
        "noise": lambda: (u(4, 12), float(rng.integers(0, 2**31 - 1))),
    }
    if kind not in draws:
        raise ConfigError(f"unknown shift {kind!r}; choose from {', '.join(SHIFT_KINDS)}")
    return Shift(kind, tuple(float(v) for v in draws[kind]()))


def parse_shift(text: str) -> Shift:
    """'blur', 'blur:1.5', 'brightness_contrast:-30,1.3' → Shift (missing values → DEFAULT_PARAMS)."""
    kind, _, values = text.partition(":")
    kind = kind.strip()
    if kind not in SHIFT_KINDS:
        raise ConfigError(f"unknown shift {kind!r}; choose from {', '.join(SHIFT_KINDS)}")
    try:
        given = tuple(float(v) for v in values.split(",") if v.strip())
    except ValueError as exc:
        raise ConfigError(f"bad shift parameters in {text!r}: {exc}") from exc
    defaults = DEFAULT_PARAMS[kind]
    return Shift(kind, given + defaults[len(given) :])


def check_kinds(kinds: Sequence[str]) -> list[str]:
    """Validate a list of shift kinds (e.g. a training config) and return it as a list."""
    for k in kinds:
        if k not in SHIFT_KINDS:
            raise ConfigError(f"unknown shift {k!r} in episode_shifts; choose from {', '.join(SHIFT_KINDS)}")
    return list(kinds)
