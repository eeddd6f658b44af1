"""Per-stream frame buffer: preprocessed uint8 frames, the last `clip_length` always one contiguous view.

Frames are written once into a linear block of `capacity = factor × clip_length` slots. When the
block is full, the newest clip_length − 1 frames are copied to the front (once every
(factor − 1)·clip_length + 1 frames), so `clip()` is always a zero-copy view `buf[end − N:end]` that
can go straight into an inference call. Each frame is preprocessed once (by the detector) and
copied into its slot once; clips are never assembled frame by frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


class FrameRing:
    """Ring of the last `clip_length` preprocessed frames of one stream (uint8 (H, W, C))."""

    def __init__(self, clip_length: int, frame_shape: tuple[int, int, int], factor: int = 4) -> None:
        if clip_length < 1:
            raise ValueError("clip_length must be >= 1")
        self.clip_length = clip_length
        self.frame_shape = tuple(frame_shape)
        self._buf = np.zeros((max(2, factor) * clip_length, *self.frame_shape), np.uint8)
        self._end = 0  # one past the newest frame
        self._filled = 0  # valid frames since the last reset (capped at clip_length)
        self.compactions = 0

    @property
    def ready(self) -> bool:
        """True once a full clip is buffered (the stream is past warm-up)."""
        return self._filled >= self.clip_length

    @property
    def missing(self) -> int:
        """Frames still needed before the first clip."""
        return max(0, self.clip_length - self._filled)

    def next_slot(self) -> np.ndarray:
        """The (H, W, C) slot the next frame goes into; call `commit()` after filling it."""
        if self._end == len(self._buf):
            keep = self.clip_length - 1
            if keep:
                self._buf[:keep] = self._buf[self._end - keep : self._end]
            self._end = keep
            self.compactions += 1
        return self._buf[self._end]

    def commit(self) -> None:
        self._end += 1
        self._filled = min(self._filled + 1, self.clip_length)

    def push(self, frame: np.ndarray) -> None:
        """Copy one preprocessed frame in (shape and dtype must match)."""
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise DataError(
                f"frame of shape {frame.shape} / {frame.dtype} does not fit a buffer of {self.frame_shape} uint8"
            )
        self.next_slot()[...] = frame
        self.commit()

    def clip(self) -> np.ndarray:
        """The last clip_length frames, oldest first: a read-only view (N, H, W, C)."""
        if not self.ready:
            raise DataError(f"the buffer holds {self._filled} of the {self.clip_length} frames a clip needs")
        view = self._buf[self._end - self.clip_length : self._end]
        view.flags.writeable = False
        return view

    def reset(self) -> None:
        """Forget all frames (the next clip_length − 1 frames are warm-up again)."""
        self._end = 0
        self._filled = 0
