"""TensorRT engines for vadedge bundles: build (strongly typed >= 10.12, builder flags on 10.x), refit,
and the JSON sidecar beside each plain engine file. `tensorrt` is imported lazily (pip extra `trt`)."""
from ._trt import EngineError, cuda_device_info, trt_version
from .builder import build_engine, graph_precision, load_plugin_libraries
from .refit import refit_engine
from .sidecar import SIDECAR_SCHEMA, load_sidecar, sidecar_path

__all__ = ["EngineError", "SIDECAR_SCHEMA", "build_engine", "cuda_device_info", "graph_precision",
           "load_plugin_libraries", "load_sidecar", "refit_engine", "sidecar_path", "trt_version"]
