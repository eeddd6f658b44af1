"""Event snapshots: a JPEG of the event's peak frame with the error heat-map and the peak box.

`EventFeed` keeps the frame (and its error map) whose box goes into the event's messages and asks
a `SnapshotWriter` for a JPEG whenever it sends a message about a new peak frame, so the `new`,
`update` and `end` messages name a file that shows what they describe. One file per event,
`<folder>/<camera>-<seq>-<id>.jpg`, replaced atomically (written to a temporary name, fsynced,
renamed) when the peak moves on, so a reader never sees half a JPEG.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..errors import DataError
from .messages import Box

logger = logging.getLogger(__name__)


def render_snapshot(image: np.ndarray, heatmap: Optional[np.ndarray], box: Optional[Box]) -> np.ndarray:
    """BGR image: `image` with `heatmap` (scaled from its median to its maximum) blended over it
    and `box` drawn in red; either may be None."""
    import cv2

    from ..runtime.sinks import blend_heatmap

    img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if heatmap is not None and heatmap.size:
        heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(np.median(heat)), float(heat.max())
        if hi > lo:
            img = blend_heatmap(img, np.clip((heat - lo) / (hi - lo), 0.0, 1.0))
    img = np.ascontiguousarray(img)
    if box is not None:
        x0, y0, x1, y1 = box
        cv2.rectangle(img, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (0, 0, 255), 2)
    return img


class SnapshotWriter:
    """Writes event snapshots as JPEG files under `folder`; see the module doc."""

    def __init__(self, folder: Union[str, Path], quality: int = 90) -> None:
        self.folder = Path(folder)
        self.quality = int(quality)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot write snapshots to {self.folder}: {exc.strerror or exc}") from exc
        self.written = 0

    def path_for(self, camera: str, seq: int, event_id: str) -> Path:
        return self.folder / f"{camera}-{seq}-{event_id}.jpg"

    def write(
        self, camera: str, seq: int, event_id: str, image: np.ndarray, heatmap: Optional[np.ndarray], box: Optional[Box]
    ) -> str:
        """Write (or replace) the event's snapshot; returns its path. DataError when it cannot."""
        import cv2

        path = self.path_for(camera, seq, event_id)
        ok, jpeg = cv2.imencode(
            ".jpg", render_snapshot(image, heatmap, box), [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
        )
        if not ok:
            raise DataError(f"cannot encode the snapshot of event {event_id} as JPEG")
        tmp = path.with_name(path.name + ".tmp")
        try:
            with tmp.open("wb") as fh:
                fh.write(jpeg.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise DataError(f"cannot write snapshot {path}: {exc.strerror or exc}") from exc
        self.written += 1
        return str(path)


__all__ = ["SnapshotWriter", "render_snapshot"]
