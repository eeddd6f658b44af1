"""TensorRT engine files, the one implementation shared by the exporter and the runtime backend.

* the lazy `tensorrt` import, its version, and a logger that keeps errors for messages;
* the JSON sidecar beside every plain engine (`model.fp16.engine.json`): written with the SHA-256 of
  the plan, and validated before TensorRT sees the plan (schema, file name, SHA-256, TensorRT
  major.minor unless version-compatible, GPU name unless hardware-compatible);
* plugin libraries loaded into TensorRT's plugin registry (dlopen, or IPluginRegistry::loadLibrary
  for libraries that export `getCreators`);
* deserialising a plan and refitting weights by name (`trt.Refitter`).

`vadedge.export.tensorrt` (the engine build) and `vadedge.runtime.backends.tensorrt` both use this
module. It needs only numpy: TensorRT is imported when a function is called with no `trt` module
given (tests pass the fake in tests/fakes/tensorrt.py; nothing here has run on a GPU).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .._optional import require
from ..bundle import BundleError
from ..errors import ConfigError

logger = logging.getLogger(__name__)

SIDECAR_SCHEMA = "vadedge-engine/1"
_REQUIRED = ("schema", "engine", "engine_sha256", "precision", "tensorrt", "device", "inputs", "outputs")
_LOADED_LIBRARIES: list[Any] = []  # plugin libraries stay loaded for the life of the process
_RUNTIMES: list[Any] = []  # an engine must not outlive the IRuntime that deserialised it


class EngineError(BundleError):
    """An engine could not be built, loaded or refitted, or does not match its sidecar or this machine.

    A BundleError because engines are bundle files: callers that handle bad bundles handle these too.
    """


# --------------------------------------------------------------------------- tensorrt module
def import_tensorrt(trt: Any = None) -> Any:
    """The injected module (tests pass a fake) or `import tensorrt` with an error naming the extra."""
    return trt if trt is not None else require("tensorrt")


def trt_version(trt: Any) -> tuple[int, int, int]:
    """(major, minor, patch) of a tensorrt module from its __version__ ("10.3.0.30" -> (10, 3, 0))."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(getattr(trt, "__version__", "")))
    if not m:
        raise EngineError(f"cannot read the TensorRT version from {getattr(trt, '__version__', None)!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """A trt.ILogger that keeps warnings and errors (quoted in error messages) and logs errors."""

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= 2 or verbose:  # INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4
                self.messages.append((level, str(msg)))
            if level <= 1 or verbose:
                logger.log(logging.ERROR if level <= 1 else logging.INFO, "[TensorRT] %s", msg)

        def errors(self) -> list[str]:
            return [m for level, m in self.messages if level <= 1]

    return CollectingLogger()


# --------------------------------------------------------------------------- sidecar
def sidecar_path(engine_path: str | Path) -> Path:
    """`model.fp16.engine` -> `model.fp16.engine.json`."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def write_sidecar(engine_path: str | Path, doc: Mapping[str, Any]) -> dict:
    """Write `<engine>.json`: `doc` plus the schema, the engine's file name and its SHA-256 (computed here)."""
    engine = Path(engine_path)
    fixed = {"schema": SIDECAR_SCHEMA, "engine": engine.name, "engine_sha256": sha256_file(engine)}
    out = {**fixed, **doc, **fixed}  # the fixed keys first in the file, and never taken from `doc`
    write_json_atomic(sidecar_path(engine), out)
    return out


def load_sidecar(
    engine_path: str | Path, *, tensorrt_version: Optional[str] = None, device_name: Optional[str] = None
) -> dict:
    """Read and check an engine's sidecar; EngineError names what is missing, corrupt or mismatched.

    With `tensorrt_version` / `device_name` (those of the running machine) it also rejects an engine
    built for another TensorRT (different major.minor, unless version-compatible) or another GPU
    (unless built with hardware compatibility).
    """
    engine = Path(engine_path)
    side = sidecar_path(engine)
    if not engine.is_file():
        raise EngineError(f"engine {engine} does not exist")
    if not side.is_file():
        raise EngineError(f"engine {engine} has no sidecar {side.name}; rebuild it with vadedge export --engine trt")
    try:
        doc = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"{side} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SIDECAR_SCHEMA:
        raise EngineError(f"{side} is not a vadedge engine sidecar (schema {SIDECAR_SCHEMA} expected)")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise EngineError(f"{side} is missing {', '.join(missing)}")
    if doc["engine"] != engine.name:
        raise EngineError(f"{side} describes {doc['engine']}, not {engine.name}")
    if sha256_file(engine) != doc["engine_sha256"]:
        raise EngineError(
            f"engine {engine.name} does not match its sidecar (SHA-256 differs): the file is "
            f"corrupt or was replaced; rebuild it"
        )
    if tensorrt_version is not None:
        built = ".".join(str(doc["tensorrt"]).split(".")[:2])
        here = ".".join(str(tensorrt_version).split(".")[:2])
        if built != here and not doc.get("version_compatible", False):
            raise EngineError(
                f"engine {engine.name} was built with TensorRT {doc['tensorrt']} but this machine "
                f"has {tensorrt_version}; rebuild it here (engines are not portable)"
            )
    if device_name is not None:
        built_dev = (doc.get("device") or {}).get("name") if isinstance(doc.get("device"), dict) else doc["device"]
        if built_dev and built_dev != device_name and not doc.get("hardware_compatibility"):
            raise EngineError(
                f"engine {engine.name} was built on {built_dev}, this GPU is {device_name}; "
                f"rebuild it here (or build with hardware compatibility)"
            )
    return doc


# --------------------------------------------------------------------------- plugins
def load_plugin_libraries(
    trt: Any, libraries: Sequence[str | Path], *, registry: Any = None, dlopen: Optional[Callable[[str], Any]] = None
) -> list[dict]:
    """Load vadedge plugin libraries so TensorRT finds their creators; return [{file, path, sha256, loader}].

    A library that exports `getCreators` (libvadedge_plugins_dynamic.so) goes through the plugin
    registry's `load_library` (IPluginRegistry::loadLibrary); one without it (libvadedge_plugins.so)
    registers its creators when it is loaded, so `dlopen` (ctypes.CDLL) is enough. The builder passes
    its builder's registry; the runtime the global one (`trt.get_plugin_registry()`).
    """
    dlopen = dlopen or ctypes.CDLL
    loaded = []
    for lib_path in (Path(p) for p in libraries):
        if not lib_path.is_file():
            raise ConfigError(f"plugin library {lib_path} does not exist (build it with vadedge export build-plugins)")
        try:
            handle = dlopen(str(lib_path))  # static-registration libraries register their creators here
        except OSError as exc:
            raise EngineError(f"cannot load plugin library {lib_path}: {exc}") from exc
        _LOADED_LIBRARIES.append(handle)
        loader = "dlopen"
        if hasattr(handle, "getCreators"):  # built for IPluginRegistry::loadLibrary
            registry = registry if registry is not None else trt.get_plugin_registry()
            if registry.load_library(str(lib_path)) is None:
                raise EngineError(f"TensorRT's plugin registry could not load {lib_path}")
            loader = "registry"
        logger.debug("plugin library %s loaded (%s)", lib_path, loader)
        loaded.append({"file": lib_path.name, "path": str(lib_path), "sha256": sha256_file(lib_path), "loader": loader})
    return loaded


def sidecar_plugin_libraries(engine_path: str | Path, sidecar: Mapping[str, Any]) -> list[Path]:
    """The plugin libraries a (validated) sidecar names that sit beside the engine, each checked against
    the SHA-256 the build recorded, since loading a library runs its code.

    Names must be plain file names (never a path elsewhere); a named library that is absent is left
    to the caller (it may be passed explicitly).
    """
    engine = Path(engine_path)
    recorded = {p.get("file"): p.get("sha256") for p in sidecar.get("plugins") or [] if isinstance(p, dict)}
    found = []
    for name in sidecar.get("plugin_libraries") or []:
        if not (isinstance(name, str) and name == Path(name).name):
            raise EngineError(
                f"the sidecar of {engine.name} names plugin library {name!r}: only file names "
                f"beside the engine are allowed"
            )
        path = engine.parent / name
        if not path.is_file():
            continue
        want = recorded.get(name)
        if want and sha256_file(path) != want:
            raise EngineError(
                f"plugin library {name} beside {engine.name} does not match the SHA-256 recorded "
                f"when the engine was built: the file is corrupt or was replaced"
            )
        found.append(path)
    return found


# --------------------------------------------------------------------------- deserialise / refit
def deserialize_engine(trt: Any, path: str | Path, log: Any, *, version_compatible: bool = False) -> Any:
    """Deserialise the plan at `path`; version-compatible plans embed a lean runtime (host code allowed)."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"engine {path} does not exist")
    runtime = trt.Runtime(log)
    if version_compatible:
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        errors = "; ".join(log.errors()[-3:]) if hasattr(log, "errors") else ""
        raise EngineError(
            f"TensorRT could not deserialise {path.name}: engines only run with the TensorRT "
            f"version and GPU they were built for (rebuild it on this device) {errors}".rstrip()
        )
    _RUNTIMES.append(runtime)
    return engine


def refit_weights(trt: Any, engine: Any, weights: Mapping[str, np.ndarray], log: Any) -> None:
    """Push `weights` {weights name: array} into a deserialised refittable engine (`trt.Refitter`).

    Names are ONNX initializer names (as the ONNX parser registers them). Every name must be
    refittable in the engine, each array must keep its element count, and weights TensorRT wants
    together (`get_missing_weights`) must all be given.
    """
    if not weights:
        raise EngineError("refit: no weights given")
    if not getattr(engine, "refittable", False):
        raise EngineError("the engine is not refittable; build it with refittable=True or a list of weight names")
    refitter = trt.Refitter(engine, log)
    allowed = set(refitter.get_all_weights())
    unknown = sorted(set(weights) - allowed)
    if unknown:
        some = ", ".join(sorted(allowed)[:8]) + (" ..." if len(allowed) > 8 else "")
        raise EngineError(f"not refittable in this engine: {', '.join(unknown)} (refittable: {some})")
    keep_alive = []  # TensorRT reads the host arrays in refit_cuda_engine
    for name, value in weights.items():
        arr = np.ascontiguousarray(value)
        keep_alive.append(arr)
        if not refitter.set_named_weights(name, trt.Weights(arr)):
            raise EngineError(
                f"TensorRT rejected new weights for {name} (shape {arr.shape}, {arr.dtype}): the "
                f"element count and type must match the weights the engine was built with"
            )
    missing = list(refitter.get_missing_weights())
    if missing:
        raise EngineError(f"these weights must be supplied together with the ones given: {', '.join(missing)}")
    if not refitter.refit_cuda_engine():
        errors = "; ".join(log.errors()[-3:]) if hasattr(log, "errors") else ""
        raise EngineError(f"TensorRT failed to refit the engine {errors}".rstrip())


def refit_engine(
    engine: str | Path | Any,
    weights: Mapping[str, np.ndarray],
    *,
    trt: Any = None,
    out_path: str | Path | None = None,
    logger: Any = None,
) -> Any:
    """Refit `engine` (a path or a deserialised ICudaEngine) with `weights` {name: array}; return the engine.

    With `out_path` the refitted plan is serialised there (and its sidecar copied with the new SHA-256
    and the refitted weight names).
    """
    trt = import_tensorrt(trt)
    log = logger or make_logger(trt)
    source: Optional[Path] = None
    if isinstance(engine, (str, Path)):
        source = Path(engine)
        engine = deserialize_engine(trt, source, log, version_compatible=_version_compatible(source))
    refit_weights(trt, engine, weights, log)
    if out_path is not None:
        out = Path(out_path)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(bytes(memoryview(engine.serialize())))
        os.replace(tmp, out)
        src_side = sidecar_path(source) if source is not None else None
        if src_side is not None and src_side.is_file():
            doc = json.loads(src_side.read_text())
            write_sidecar(out, {**doc, "refitted_weights": sorted(weights)})
    return engine


def _version_compatible(engine_path: Path) -> bool:
    """The sidecar's version_compatible flag, read leniently (refit works on engines without a sidecar)."""
    side = sidecar_path(engine_path)
    try:
        return bool(side.is_file() and json.loads(side.read_text()).get("version_compatible"))
    except (ValueError, AttributeError):
        return False
