"""vadedge: learn what normal looks like for a fixed camera, flag unusual events live.

The runtime SDK needs only numpy, OpenCV, ONNX Runtime and click; torch and the training stack
(`vadedge.train`), the exporter (`vadedge.export`) and calibration (`vadedge.calibration`) load
lazily, so `import vadedge` stays light on a Jetson. The runtime names below are imported on first
use (PEP 562 module `__getattr__`), so `import vadedge` does not even load ONNX Runtime.

Public API:
    Detector, StreamHandle            — load a bundle, process frames of one or many streams
    FrameResult, Event                — per-frame verdicts and anomalous intervals
    open_source, Source, Frame        — cameras, URLs, video files, frame folders, iterables
    default_bundle                    — the model shipped inside the package
    load_bundle, Bundle               — the deployable artifact (vadedge.json + ONNX + state)
    InputSpec, prepare_frame          — frame preprocessing shared by training and runtime
    open_split, Video, Split          — dataset readers (frame folders, video files, labels)
    generate_dataset                  — deterministic synthetic scene with labelled anomalies
    VadedgeError and subclasses       — user-facing errors (the CLI exits 2 on them)

Example:
    from vadedge import Detector
    det = Detector.load("bundle/")
    r = det.process(frame_bgr)        # r.score, r.is_anomaly, r.heatmap, r.latency_ms
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .datasets import Split, Video, open_split
from .errors import CheckpointError, ConfigError, DataError, MissingDependencyError, VadedgeError
from .preprocess import InputSpec, prepare_frame
from .synthetic import generate_dataset

_LAZY = {
    "Detector": "vadedge.runtime.detector",
    "StreamHandle": "vadedge.runtime.detector",
    "FrameResult": "vadedge.runtime.results",
    "Event": "vadedge.runtime.results",
    "open_source": "vadedge.runtime.sources",
    "Source": "vadedge.runtime.sources",
    "Frame": "vadedge.runtime.sources",
    "default_bundle": "vadedge.runtime.defaults",
    "load_bundle": "vadedge.bundle",
    "Bundle": "vadedge.bundle",
    "BundleError": "vadedge.bundle",
}

__all__ = [
    "__version__",
    "Detector",
    "StreamHandle",
    "FrameResult",
    "Event",
    "open_source",
    "Source",
    "Frame",
    "default_bundle",
    "load_bundle",
    "Bundle",
    "BundleError",
    "InputSpec",
    "prepare_frame",
    "open_split",
    "Video",
    "Split",
    "generate_dataset",
    "VadedgeError",
    "DataError",
    "ConfigError",
    "CheckpointError",
    "MissingDependencyError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vadedge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
