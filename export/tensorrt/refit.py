"""`refit_engine`: push new weights (MPN's adapted parameters) into a refittable engine without a rebuild.

Uses `trt.Refitter(engine, logger)`: `set_named_weights(name, trt.Weights(array))` for each weight
(names = ONNX initializer names, as the ONNX parser registers them), `get_missing_weights()` to catch
weights that must change together, then `refit_cuda_engine()`. The engine must have been built with
`build_engine(..., refittable=True | [names])`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ._trt import EngineError, import_tensorrt, make_logger
from .sidecar import sha256_file, sidecar_path, write_json_atomic

_RUNTIMES: list[Any] = []  # an engine must not outlive the IRuntime that deserialised it


def _deserialize(trt: Any, path: Path, logger: Any) -> Any:
    if not path.is_file():
        raise EngineError(f"engine {path} does not exist")
    runtime = trt.Runtime(logger)
    side = sidecar_path(path)
    if side.is_file():
        try:
            if json.loads(side.read_text()).get("version_compatible"):
                runtime.engine_host_code_allowed = True  # version-compatible plans embed a lean runtime
        except ValueError:
            pass
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    _RUNTIMES.append(runtime)
    if engine is None:
        errors = "; ".join(logger.errors()[-3:])
        raise EngineError(f"TensorRT could not load {path.name} (built for another TensorRT or GPU?) {errors}")
    return engine


def refit_engine(engine: str | Path | Any, weights: Mapping[str, np.ndarray], *, trt: Any = None,
                 out_path: str | Path | None = None, logger: Any = None) -> Any:
    """Refit `engine` (a path or a deserialized ICudaEngine) with `weights` {name: array}; return the engine.

    With `out_path` the refitted plan is serialized there (and its sidecar copied/updated).
    """
    trt = import_tensorrt(trt)
    logger = logger or make_logger(trt)
    source: Optional[Path] = None
    if isinstance(engine, (str, Path)):
        source = Path(engine)
        engine = _deserialize(trt, source, logger)
    if not weights:
        raise EngineError("refit_engine: no weights given")
    if not getattr(engine, "refittable", False):
        raise EngineError("the engine is not refittable; build it with refittable=True or a list of weight names")
    refitter = trt.Refitter(engine, logger)
    allowed = set(refitter.get_all_weights())
    unknown = sorted(set(weights) - allowed)
    if unknown:
        some = ", ".join(sorted(allowed)[:8]) + (" ..." if len(allowed) > 8 else "")
        raise EngineError(f"not refittable in this engine: {', '.join(unknown)} (refittable: {some})")
    keep_alive = []
    for name, value in weights.items():
        arr = np.ascontiguousarray(value)
        keep_alive.append(arr)
        if not refitter.set_named_weights(name, trt.Weights(arr)):
            raise EngineError(f"TensorRT rejected new weights for {name} (shape {arr.shape}, {arr.dtype}): the "
                              f"element count and type must match the weights the engine was built with")
    missing = list(refitter.get_missing_weights())
    if missing:
        raise EngineError(f"these weights must be supplied together with the ones given: {', '.join(missing)}")
    if not refitter.refit_cuda_engine():
        errors = "; ".join(logger.errors()[-3:])
        raise EngineError(f"TensorRT failed to refit the engine {errors}")
    if out_path is not None:
        out = Path(out_path)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(bytes(memoryview(engine.serialize())))
        os.replace(tmp, out)
        src_side = sidecar_path(source) if source is not None else None
        if src_side is not None and src_side.is_file():
            doc = json.loads(src_side.read_text())
            doc.update(engine=out.name, engine_sha256=sha256_file(out), refitted_weights=sorted(weights))
            write_json_atomic(sidecar_path(out), doc)
    return engine
