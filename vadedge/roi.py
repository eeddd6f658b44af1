"""ROI / privacy mask for the local error components (issue 14 item 3).

Polygons in the pixel coordinates of a camera frame of `width` × `height` (what a user reads off a
snapshot of the camera: x to the right, y down). `mode` "exclude" ignores what the polygons cover (a
clock overlay, swaying trees, a private window); "include" scores only what they cover. The mask
is rasterised once at the model input (frames are resized to it without cropping, so polygons scale
with the frame) and averaged to the error map's cells: a cell's weight is the fraction of its pixels
that are scored. `vadedge.scoring.window_max_mse` multiplies it into the error map before the box
filter, so a masked region can never raise a local component. Whole-frame components (psnr) are
not masked: they come out of the graph.

JSON (in vadedge.json `score.mask`, or a file given to `vadedge run --mask`):

    {"width": 360, "height": 240, "mode": "exclude",
     "polygons": [[[300, 0], [360, 0], [360, 20], [300, 20]]]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np

from .bundle import MaskSpec
from .errors import ConfigError

MAX_POLYGONS = 256
MAX_POINTS = 4096


def mask_from_dict(doc: Any, where: str = "mask") -> MaskSpec:
    """A validated MaskSpec from its JSON form; ConfigError names the first problem."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected an object with width, height and polygons, got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"width", "height", "polygons", "mode"})
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    try:
        spec = MaskSpec(
            width=int(doc["width"]),
            height=int(doc["height"]),
            polygons=tuple(tuple((float(x), float(y)) for x, y in poly) for poly in doc["polygons"]),
            mode=str(doc.get("mode", "exclude")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: needs integer width and height and polygons as lists of [x, y] "
            f"points ({type(exc).__name__}: {exc})"
        ) from exc
    check_mask(spec, where)
    return spec


def check_mask(spec: MaskSpec, where: str = "mask") -> None:
    """Sizes positive, mode known, 3+ finite points per polygon, every point inside the frame."""
    if spec.width < 1 or spec.height < 1:
        raise ConfigError(f"{where}: width and height must be >= 1, got {spec.width}x{spec.height}")
    if spec.mode not in ("exclude", "include"):
        raise ConfigError(f"{where}: mode must be 'exclude' or 'include', got {spec.mode!r}")
    if not spec.polygons or len(spec.polygons) > MAX_POLYGONS:
        raise ConfigError(f"{where}: needs 1 to {MAX_POLYGONS} polygons, got {len(spec.polygons)}")
    for i, poly in enumerate(spec.polygons):
        if not 3 <= len(poly) <= MAX_POINTS:
            raise ConfigError(f"{where}: polygon {i} needs 3 to {MAX_POINTS} points, got {len(poly)}")
        for x, y in poly:
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ConfigError(f"{where}: polygon {i} has a non-finite point ({x}, {y})")
            if not (0 <= x <= spec.width and 0 <= y <= spec.height):
                raise ConfigError(
                    f"{where}: polygon {i} has the point ({x:g}, {y:g}) outside the "
                    f"{spec.width}x{spec.height} frame (x in [0, {spec.width}], y in [0, "
                    f"{spec.height}])"
                )


def read_mask(path: Union[str, Path]) -> MaskSpec:
    """A mask from a JSON file (`vadedge run --mask`)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"mask file {p}: cannot be read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"mask file {p}: not valid JSON ({exc})") from exc
    return mask_from_dict(doc, f"mask file {p}")


def cell_weights(spec: MaskSpec, input_hw: tuple[int, int], cell: int) -> np.ndarray:
    """[H / cell, W / cell] float weights: the fraction of each error-map cell that is scored."""
    import cv2

    h, w = input_hw
    if h % cell or w % cell:
        raise ConfigError(f"an error-map cell of {cell} px does not tile the {h}x{w} input")
    sx, sy = w / spec.width, h / spec.height
    covered = np.zeros((h, w), np.uint8)
    polys = [np.round(np.asarray(p, np.float64) * (sx, sy)).astype(np.int32) for p in spec.polygons]
    cv2.fillPoly(covered, polys, 1)
    scored = covered if spec.mode == "include" else 1 - covered
    return scored.astype(np.float64).reshape(h // cell, cell, w // cell, cell).mean(axis=(1, 3))
