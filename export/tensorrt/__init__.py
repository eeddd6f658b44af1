"""TensorRT engines for vadedge bundles: build (strongly typed >= 10.12, builder flags on 10.x), refit,
and the JSON sidecar beside each plain engine file. `tensorrt` is imported lazily (pip extra `trt`).

The build lives here; the sidecar, plugin loading, deserialisation and refit are shared with the
runtime backend in `vadedge.runtime.engine` and re-exported for the export API."""

from vadedge.runtime.engine import (
    SIDECAR_SCHEMA,
    EngineError,
    load_plugin_libraries,
    load_sidecar,
    refit_engine,
    sidecar_path,
    trt_version,
)

from ._trt import cuda_device_info
from .builder import build_engine, graph_precision

__all__ = [
    "EngineError",
    "SIDECAR_SCHEMA",
    "build_engine",
    "cuda_device_info",
    "graph_precision",
    "load_plugin_libraries",
    "load_sidecar",
    "refit_engine",
    "sidecar_path",
    "trt_version",
]
