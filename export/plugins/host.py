"""The plugin kernels' math built for the CPU and called through ctypes.

`csrc/vad_memory_math.h` (memory addressing) and `csrc/vad_prototype_math.h` (MPN's prototype
formation) hold the arithmetic as `__host__ __device__` functions; the CUDA kernels run it on the GPU
and `csrc/vad_memory_host.cpp` / `csrc/vad_prototype_host.cpp` run the very same functions on the
host. Building that host library (any C++17 compiler, no CUDA, no TensorRT) lets tests and users
check the plugin math against NumPy, ONNX Runtime and `train/memory.py` on a machine without a GPU.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np

from vadedge.errors import VadedgeError

CSRC = Path(__file__).resolve().parent / "csrc"
HOST_SOURCES = ("vad_memory_host.cpp", "vad_prototype_host.cpp")


class PluginBuildError(VadedgeError):
    """A compiler or CMake step for the plugin library failed, or no compiler was found."""


def find_cxx() -> Optional[str]:
    """The host C++ compiler to use: $CXX, else g++, c++ or clang++ on PATH (None if there is none)."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build_host_library(out_dir: str | Path, cxx: Optional[str] = None) -> Path:
    """Compile the host reference library into `out_dir` and return the .so path."""
    cxx = cxx or find_cxx()
    if cxx is None:
        raise PluginBuildError("no C++ compiler found (set CXX or install g++) to build the host kernel library")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lib = out / "libvadedge_host_kernels.so"
    cmd = [
        cxx,
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        "-Wall",
        "-Wextra",
        f"-I{CSRC}",
        *[str(CSRC / s) for s in HOST_SOURCES],
        "-o",
        str(lib),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PluginBuildError(f"building the host kernel library failed:\n{' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return lib


def _f32(x: np.ndarray, name: str, ndim: int) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


class HostKernels:
    """NumPy front end of the host library: same inputs/outputs as the `vadedge` ONNX nodes."""

    def __init__(self, library: str | Path) -> None:
        self.path = Path(library)
        self._lib = ctypes.CDLL(str(self.path))
        f32p = ctypes.POINTER(ctypes.c_float)
        i32 = ctypes.c_int
        self._lib.vad_host_memory_read.argtypes = [f32p, f32p, i32, i32, i32, i32, f32p, f32p]
        self._lib.vad_host_memory_read.restype = i32
        self._lib.vad_host_memory_update.argtypes = [
            f32p,
            f32p,
            ctypes.POINTER(ctypes.c_uint8),
            i32,
            i32,
            i32,
            i32,
            f32p,
        ]
        self._lib.vad_host_memory_update.restype = i32
        self._lib.vad_host_prototype_formation.argtypes = [f32p, f32p, i32, i32, i32, i32, f32p]
        self._lib.vad_host_prototype_formation.restype = i32

    @staticmethod
    def _ptr(a: np.ndarray, ctype: type = ctypes.c_float) -> ctypes._Pointer:
        return a.ctypes.data_as(ctypes.POINTER(ctype))

    def memory_read(self, features: np.ndarray, memory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MemoryRead(features[B,K,D], memory[B,M,D]) -> (query[B,K,D], read[B,K,D])."""
        f, mem = _f32(features, "features", 3), _f32(memory, "memory", 3)
        (b, k, d), (bm, m, dm) = f.shape, mem.shape
        if (bm, dm) != (b, d):
            raise ValueError(f"features {f.shape} and memory {mem.shape} disagree on batch or feature size")
        query, read = np.empty_like(f), np.empty_like(f)
        rc = self._lib.vad_host_memory_read(self._ptr(f), self._ptr(mem), b, k, m, d, self._ptr(query), self._ptr(read))
        if rc != 0:
            raise ValueError(f"vad_host_memory_read rejected shapes features {f.shape}, memory {mem.shape}")
        return query, read

    def memory_update(self, query: np.ndarray, memory: np.ndarray, gate: np.ndarray) -> np.ndarray:
        """MemoryUpdate(query[B,K,D], memory[B,M,D], gate[B] bool) -> new_memory[B,M,D]."""
        q, mem = _f32(query, "query", 3), _f32(memory, "memory", 3)
        g = np.ascontiguousarray(np.asarray(gate).reshape(-1) != 0, dtype=np.uint8)
        (b, k, d), (bm, m, dm) = q.shape, mem.shape
        if (bm, dm) != (b, d) or g.shape[0] != b:
            raise ValueError(f"query {q.shape}, memory {mem.shape} and gate {g.shape} disagree")
        out = np.empty_like(mem)
        rc = self._lib.vad_host_memory_update(
            self._ptr(q), self._ptr(mem), self._ptr(g, ctypes.c_uint8), b, k, m, d, self._ptr(out)
        )
        if rc != 0:
            raise ValueError(f"vad_host_memory_update rejected shapes query {q.shape}, memory {mem.shape}")
        return out

    def prototype_formation(self, query: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """PrototypeFormation(query[B,N,D], weight[M,D]) -> prototypes[B,M,D]."""
        q, w = _f32(query, "query", 3), _f32(weight, "weight", 2)
        (b, n, d), (m, dw) = q.shape, w.shape
        if dw != d:
            raise ValueError(f"query {q.shape} and weight {w.shape} disagree on the feature size")
        out = np.empty((b, m, d), np.float32)
        rc = self._lib.vad_host_prototype_formation(self._ptr(q), self._ptr(w), b, n, m, d, self._ptr(out))
        if rc != 0:
            raise ValueError(f"vad_host_prototype_formation rejected shapes query {q.shape}, weight {w.shape}")
        return out
