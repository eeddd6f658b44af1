"""Export trained models to bundles: ONNX (FP32 / FP16 / INT8 Q/DQ), TensorRT engines, plugins, DeepStream.

`export_bundle(model_dir, out, precision=..., ...)` is the entry point (docs/export.md). Importing
this package is light: torch and onnx load when an export runs, so `vadedge.export.verify` and the
TensorRT modules stay usable on a device without the training stack.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union


def export_bundle(model_dir: Union[str, Path], out: Union[str, Path, None] = None, **kwargs: Any) -> Path:
    """Checkpoint folder → bundle folder; see `vadedge.export.exporter.export_bundle` for the options."""
    from .exporter import export_bundle as _export

    return _export(model_dir, out, **kwargs)


__all__ = ["export_bundle"]
