"""`build_plugins`: drive the CMake build of the TensorRT plugin library on the target machine.

The plugin sources ship with the package (`csrc/`, `CMakeLists.txt`); TensorRT headers and a CUDA
toolkit are needed, so this runs on the Jetson / GPU host that will run the engine (JetPack and the
TensorRT tarballs ship the headers, the pip wheels do not).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

from .host import PluginBuildError

SOURCE_DIR = Path(__file__).resolve().parent
LIBRARY_NAME = "libvadedge_plugins.so"
DYNAMIC_LIBRARY_NAME = "libvadedge_plugins_dynamic.so"
KERNELS_LIBRARY_NAME = "libvadedge_kernels.a"
#: Used when no GPU can be queried: Orin on aarch64, Turing..Hopper on x86_64.
DEFAULT_ARCHS = {"aarch64": ("87",), "x86_64": ("75", "80", "86", "89", "90")}

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def detect_cuda_archs() -> Optional[tuple[str, ...]]:
    """Compute capabilities of the visible GPUs via nvidia-smi ("8.7" -> "87"); None if unavailable."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        proc = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return None
    caps = sorted({line.strip().replace(".", "") for line in proc.stdout.splitlines() if line.strip()})
    return tuple(caps) if proc.returncode == 0 and caps and all(c.isdigit() for c in caps) else None


def default_cuda_archs() -> tuple[str, ...]:
    """The GPUs present (nvidia-smi), else a per-platform default (Jetson has no nvidia-smi: Orin sm_87)."""
    return detect_cuda_archs() or DEFAULT_ARCHS.get(platform.machine(), DEFAULT_ARCHS["x86_64"])


def _normalise_archs(cuda_archs: Sequence[str] | str) -> list[str]:
    items = cuda_archs.replace(";", ",").split(",") if isinstance(cuda_archs, str) else list(cuda_archs)
    archs = [str(a).strip().lower().removeprefix("sm_").replace(".", "") for a in items if str(a).strip()]
    bad = [a for a in archs if not a.isdigit()]
    if not archs or bad:
        raise PluginBuildError(f"CUDA architectures must look like 87, sm_86 or 8.9; got {cuda_archs!r}")
    return archs


def build_plugins(
    out_dir: str | Path,
    cuda_archs: Sequence[str] | str | None = None,
    *,
    tensorrt_root: str | Path | None = None,
    kernels_only: bool = False,
    build_type: str = "Release",
    cmake: Optional[str] = None,
    jobs: Optional[int] = None,
    runner: Runner = subprocess.run,
) -> Path:
    """Configure and build the plugin library with CMake; return the path of `libvadedge_plugins.so`.

    `cuda_archs`: e.g. ("87",) for Orin, ("86", "89") for desktops; default: the GPUs nvidia-smi sees,
    else 87 on aarch64 and 75..90 on x86_64. `kernels_only=True` builds just the CUDA kernels (no
    TensorRT needed) and returns the static kernel library. `runner` is injectable for tests.
    """
    cmake = cmake or shutil.which("cmake")
    if cmake is None:
        raise PluginBuildError("cmake was not found on PATH; install cmake (>= 3.18) to build the plugins")
    archs = _normalise_archs(cuda_archs) if cuda_archs is not None else list(default_cuda_archs())
    out = Path(out_dir).resolve()
    build = out / "build"
    build.mkdir(parents=True, exist_ok=True)
    configure = [
        cmake,
        "-S",
        str(SOURCE_DIR),
        "-B",
        str(build),
        f"-DCMAKE_BUILD_TYPE={build_type}",
        f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}",
        f"-DVADEDGE_OUTPUT_DIR={out}",
        f"-DVADEDGE_KERNELS_ONLY={'ON' if kernels_only else 'OFF'}",
    ]
    if tensorrt_root is not None:
        configure.append(f"-DTENSORRT_ROOT={Path(tensorrt_root).resolve()}")
    nvcc = os.environ.get("CUDACXX") or shutil.which("nvcc")
    if nvcc:
        configure.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    compile_ = [cmake, "--build", str(build), "--parallel", str(jobs or os.cpu_count() or 1)]
    for step, cmd in (("configure", configure), ("build", compile_)):
        proc = runner(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            log = (proc.stdout or "") + (proc.stderr or "")
            hint = ""
            if "TensorRT headers/library not found" in log:
                hint = (
                    "\nhint: install the TensorRT development package (JetPack: libnvinfer-dev) or pass "
                    "tensorrt_root= / --tensorrt-root pointing at a TensorRT tarball"
                )
            elif "No CMAKE_CUDA_COMPILER" in log or "CUDA_COMPILER" in log:
                hint = "\nhint: put nvcc on PATH or set CUDACXX to the CUDA compiler"
            raise PluginBuildError(f"plugin {step} step failed ({' '.join(cmd)}):\n{log[-4000:]}{hint}")
    result = out / (KERNELS_LIBRARY_NAME if kernels_only else LIBRARY_NAME)
    if not result.is_file() and runner is subprocess.run:
        raise PluginBuildError(f"the build finished but {result} was not produced")
    return result
