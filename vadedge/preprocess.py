"""Frame preprocessing shared by training, evaluation and the runtime: resize + colour, uint8 out."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .errors import ConfigError, DataError

COLOR_MODES = ("gray", "rgb", "bgr")


@dataclass(frozen=True)
class InputSpec:
    """What a model consumes: `frames` context frames of `height`×`width` in `color`, values in [-1, 1].

    Frames enter as uint8 after `prepare_frame`; the [-1, 1] scaling happens inside the model
    (so an exported graph takes uint8 directly).
    """

    height: int
    width: int
    color: str = "rgb"
    frames: int = 4  # context frames (T); 1 for reconstruction models

    def __post_init__(self) -> None:
        if self.color not in COLOR_MODES:
            raise ConfigError(f"color must be one of {COLOR_MODES}, got {self.color!r}")
        if self.height % 8 or self.width % 8 or self.height <= 0 or self.width <= 0:
            raise ConfigError(f"input size must be positive multiples of 8, got {self.height}x{self.width}")
        if self.frames < 1:
            raise ConfigError(f"frames must be >= 1, got {self.frames}")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        return cls(**{k: d[k] for k in ("height", "width", "color", "frames") if k in d})


def prepare_frame(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """BGR (or single-channel) uint8 frame of any size -> uint8 array (H, W, C) as the model expects."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        got = type(frame).__name__ if not isinstance(frame, np.ndarray) else f"array of {frame.dtype}"
        raise DataError(f"frames must be uint8 numpy arrays (H, W[, 3]), got {got}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise DataError(f"frames must have shape (H, W), (H, W, 3) or (H, W, 4), got {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    h, w = frame.shape[:2]
    if (h, w) != (spec.height, spec.width):
        shrinking = h * w > spec.height * spec.width
        frame = cv2.resize(
            frame, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
    if spec.color == "gray":
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        return frame[:, :, None]
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if spec.color == "rgb":
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(frame)
