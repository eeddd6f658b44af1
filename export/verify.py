"""Check a bundle's model files against its vadedge.json (names, dtypes, shapes of every graph I/O).

Needs only ONNX Runtime (a runtime dependency), so `vadedge info` and the runtime can use it on a
device without torch. A corrupt model file or a manifest that does not describe its graph raises
`BundleError` naming the file and the mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from vadedge._optional import require
from vadedge.bundle import Bundle, BundleError, Manifest, check_graph_io, load_bundle


def check_model_io(path: Union[str, Path], manifest: Manifest) -> None:
    """Raise BundleError if the ONNX file at `path` is unreadable or its I/O differs from `manifest`."""
    from vadedge.runtime.backends.onnxruntime import make_session

    ort = require("onnxruntime")  # a missing onnxruntime is MissingDependencyError, not a corrupt file
    path = Path(path)
    try:
        sess = make_session(path, optimize=False, log_severity=4, ort=ort)
    except Exception as exc:  # ORT raises its own exception types for corrupt files
        raise BundleError(
            f"{path.name} cannot be loaded by ONNX Runtime (corrupt or not ONNX): "
            f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
        ) from exc
    check_graph_io(path.name, sess.get_inputs(), [o.name for o in sess.get_outputs()], manifest)


def check_bundle(path_or_bundle: Union[str, Path, Bundle]) -> Bundle:
    """Validate vadedge.json, the state file and every ONNX model file of a bundle; return the Bundle."""
    b = path_or_bundle if isinstance(path_or_bundle, Bundle) else load_bundle(path_or_bundle)
    for precision in b.manifest.models:
        check_model_io(b.model_file(precision), b.manifest)
    for e in b.manifest.engines:
        if not b.file(e.file, "engine").is_file():
            raise BundleError(f"bundle {b.path}: engine file {e.file} is missing")
    return b
