"""vadedge: learn what normal looks like for a fixed camera, flag unusual events live.

The runtime SDK needs only numpy, OpenCV, ONNX Runtime and click; torch and the training stack
(`vadedge.train`), the exporter (`vadedge.export`) and calibration (`vadedge.calibration`) load
lazily, so `import vadedge` stays light on a Jetson.

Public API (more arrives with the runtime):
    InputSpec, prepare_frame          — frame preprocessing shared by training and runtime
    open_split, Video, Split          — dataset readers (frame folders, video files, labels)
    generate_dataset                  — deterministic synthetic scene with labelled anomalies
    VadedgeError and subclasses       — user-facing errors (the CLI exits 2 on them)
"""
from ._version import __version__
from .datasets import Split, Video, open_split
from .errors import CheckpointError, ConfigError, DataError, MissingDependencyError, VadedgeError
from .preprocess import InputSpec, prepare_frame
from .synthetic import generate_dataset

__all__ = [
    "__version__", "InputSpec", "prepare_frame", "open_split", "Video", "Split", "generate_dataset",
    "VadedgeError", "DataError", "ConfigError", "CheckpointError", "MissingDependencyError",
]
