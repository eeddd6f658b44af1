"""Lazy TensorRT import, version boundaries, a message-collecting logger and the CUDA device probe."""
from __future__ import annotations

import ctypes
import logging
import re
from types import ModuleType
from typing import Any, Optional

from vadedge._optional import require
from vadedge.errors import VadedgeError

logger = logging.getLogger(__name__)

#: TensorRT 10.12 deprecated the weak-typing APIs; 11.0 removed them (strongly typed networks only).
STRONG_TYPING_FROM = (10, 12)
STRONG_TYPING_ONLY_FROM = (11, 0)


class EngineError(VadedgeError):
    """An engine could not be built, loaded or refitted (parser errors, bad sidecar, wrong weights...)."""


def import_tensorrt(trt: Optional[ModuleType | Any] = None) -> Any:
    """The injected module (tests pass a fake) or `import tensorrt` with an error naming the extra."""
    return trt if trt is not None else require("tensorrt")


def trt_version(trt: Any) -> tuple[int, int, int]:
    """(major, minor, patch) of a tensorrt module from its __version__ ("10.3.0.30" -> (10, 3, 0))."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(getattr(trt, "__version__", "")))
    if not m:
        raise EngineError(f"cannot read the TensorRT version from {getattr(trt, '__version__', None)!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def make_logger(trt: Any, verbose: bool = False) -> Any:
    """A trt.ILogger that keeps warnings and errors (for error messages) and prints errors."""

    class CollectingLogger(trt.ILogger):  # type: ignore[misc, name-defined]
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


def cuda_device_info(index: int = 0) -> Optional[dict]:
    """Name and compute capability of CUDA device `index` through libcudart (None without a GPU).

    Reads only the first field of cudaDeviceProp (`char name[256]`), which every CUDA version keeps
    first, and the capability through cudaDeviceGetAttribute, so no struct layout is assumed.
    """
    for lib_name in ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"):
        try:
            cudart = ctypes.CDLL(lib_name)
            break
        except OSError:
            continue
    else:
        return None
    try:
        get_props = getattr(cudart, "cudaGetDeviceProperties_v2", None) or cudart.cudaGetDeviceProperties
        buf = ctypes.create_string_buffer(8192)
        if get_props(buf, ctypes.c_int(index)) != 0:
            return None
        major, minor = ctypes.c_int(), ctypes.c_int()
        cudart.cudaDeviceGetAttribute(ctypes.byref(major), ctypes.c_int(75), ctypes.c_int(index))
        cudart.cudaDeviceGetAttribute(ctypes.byref(minor), ctypes.c_int(76), ctypes.c_int(index))
    except (AttributeError, OSError):
        return None
    return {"name": buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace"),
            "compute_capability": f"{major.value}.{minor.value}"}


def dtype_name(trt: Any, dtype: Any) -> str:
    """A numpy-style name for a TensorRT DataType ("float32", "float16", "uint8", ...)."""
    try:
        import numpy as np

        return np.dtype(trt.nptype(dtype)).name
    except Exception:  # noqa: BLE001 - types without a numpy equivalent (bf16, fp8, int4)
        return str(dtype).split(".")[-1].lower()
