"""Build-side TensorRT facts: version boundaries, the CUDA device probe and dtype names.

The lazy import, the version parser, the logger and EngineError live in `vadedge.runtime.engine`
(shared with the runtime backend) and are re-exported here."""

from __future__ import annotations

import ctypes
from typing import Any, Optional

from vadedge.runtime.engine import EngineError, import_tensorrt, make_logger, trt_version

#: TensorRT 10.12 deprecated the weak-typing APIs; 11.0 removed them (strongly typed networks only).
STRONG_TYPING_FROM = (10, 12)
STRONG_TYPING_ONLY_FROM = (11, 0)


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
    return {
        "name": buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace"),
        "compute_capability": f"{major.value}.{minor.value}",
    }


def dtype_name(trt: Any, dtype: Any) -> str:
    """A numpy-style name for a TensorRT DataType ("float32", "float16", "uint8", ...)."""
    try:
        import numpy as np

        return np.dtype(trt.nptype(dtype)).name
    except Exception:  # noqa: BLE001 - types without a numpy equivalent (bf16, fp8, int4)
        return str(dtype).split(".")[-1].lower()


__all__ = [
    "STRONG_TYPING_FROM",
    "STRONG_TYPING_ONLY_FROM",
    "EngineError",
    "cuda_device_info",
    "dtype_name",
    "import_tensorrt",
    "make_logger",
    "trt_version",
]
