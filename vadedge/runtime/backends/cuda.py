"""One small device-buffer wrapper over cuda-python (preferred) or pycuda, for the TensorRT backend.

The TensorRT backend only needs: device memory, pinned host memory, a stream, async copies,
stream sync and (optionally) CUDA graph capture / replay. `CudaApi` is that surface; tests inject a
fake. `load_cuda_api()` picks cuda-python (`cuda.bindings.runtime`, or the older `cuda.cudart`)
and falls back to pycuda (no CUDA graphs unless its Stream has begin_capture). NVIDIA's own
TensorRT samples moved from pycuda to cuda-python in TensorRT 10.13/10.14 (see docs/runtime.md).
"""

from __future__ import annotations

import ctypes
import importlib
from typing import Any, Optional

import numpy as np

from ...errors import MissingDependencyError


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


class CudaApi:
    """Interface (and documentation) of what the TensorRT backend uses. Pointers are ints."""

    name = "abstract"
    supports_graphs = False

    def set_device(self, index: int) -> None:
        raise NotImplementedError

    def device_name(self, index: int) -> str:
        raise NotImplementedError

    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def host_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        raise NotImplementedError  # pinned

    def free_host(self, array: np.ndarray) -> None:
        raise NotImplementedError

    def stream(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        raise NotImplementedError

    def destroy_stream(self, stream: Any) -> None:
        raise NotImplementedError

    def htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        raise NotImplementedError

    def dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        raise NotImplementedError

    def sync(self, stream: Any) -> None:
        raise NotImplementedError

    def begin_capture(self, stream: Any) -> None:
        raise NotImplementedError

    def end_capture(self, stream: Any) -> Any:
        raise NotImplementedError  # -> graph exec handle

    def launch(self, graph_exec: Any, stream: Any) -> None:
        raise NotImplementedError

    def destroy_graph(self, graph_exec: Any) -> None:
        raise NotImplementedError


class CudaPythonApi(CudaApi):
    """cuda-python runtime bindings: every call returns (err, *values)."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self._pinned: dict[int, int] = {}
        self._graphs: dict[int, Any] = {}

    def _call(self, result: Any) -> Any:
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:  # cudaSuccess
            name = getattr(err, "name", str(err))
            raise CudaError(f"CUDA error {name}")
        return rest[0] if len(rest) == 1 else rest

    def set_device(self, index: int) -> None:
        self._call(self.rt.cudaSetDevice(index))

    def device_name(self, index: int) -> str:
        prop = self._call(self.rt.cudaGetDeviceProperties(index))
        name = prop.name
        return (name.decode(errors="replace") if isinstance(name, (bytes, bytearray)) else str(name)).strip("\x00 ")

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr))

    def host_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes)))
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        arr = np.frombuffer(buf, dtype=np.uint8, count=nbytes)[: int(np.prod(shape)) * dtype.itemsize]
        arr = arr.view(dtype).reshape(shape)
        self._pinned[arr.__array_interface__["data"][0]] = ptr
        return arr

    def free_host(self, array: np.ndarray) -> None:
        ptr = self._pinned.pop(array.__array_interface__["data"][0], None)
        if ptr is not None:
            self._call(self.rt.cudaFreeHost(ptr))

    def stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def destroy_stream(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream))

    def htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self._call(
            self.rt.cudaMemcpyAsync(
                dst, src.ctypes.data, src.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream
            )
        )

    def dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self._call(
            self.rt.cudaMemcpyAsync(
                dst.ctypes.data, src, dst.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream
            )
        )

    def sync(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))

    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call(self.rt.cudaStreamBeginCapture(stream, mode))

    def end_capture(self, stream: Any) -> Any:
        graph = self._call(self.rt.cudaStreamEndCapture(stream))
        exe = self._call(self.rt.cudaGraphInstantiate(graph, 0))
        self._graphs[id(exe)] = graph
        return exe

    def launch(self, graph_exec: Any, stream: Any) -> None:
        self._call(self.rt.cudaGraphLaunch(graph_exec, stream))

    def destroy_graph(self, graph_exec: Any) -> None:
        graph = self._graphs.pop(id(graph_exec), None)
        self._call(self.rt.cudaGraphExecDestroy(graph_exec))
        if graph is not None:
            self._call(self.rt.cudaGraphDestroy(graph))


class PyCudaApi(CudaApi):
    """pycuda.driver (needs a current context: pycuda.autoinit is imported)."""

    name = "pycuda"

    def __init__(self, drv: Any) -> None:
        self.drv = drv
        self._mem: dict[int, Any] = {}
        self.supports_graphs = hasattr(drv.Stream, "begin_capture")

    def set_device(self, index: int) -> None:
        pass  # pycuda.autoinit made a context on the default device

    def device_name(self, index: int) -> str:
        return str(self.drv.Device(index).name())

    def malloc(self, nbytes: int) -> int:
        mem = self.drv.mem_alloc(max(int(nbytes), 1))
        self._mem[int(mem)] = mem
        return int(mem)

    def free(self, ptr: int) -> None:
        mem = self._mem.pop(ptr, None)
        if mem is not None:
            mem.free()

    def host_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        return self.drv.pagelocked_empty(shape, dtype)

    def free_host(self, array: np.ndarray) -> None:
        pass  # freed with the array

    def stream(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream: Any) -> None:
        pass

    def htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, src, stream)

    def dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst, src, stream)

    def sync(self, stream: Any) -> None:
        stream.synchronize()

    def begin_capture(self, stream: Any) -> None:
        stream.begin_capture()

    def end_capture(self, stream: Any) -> Any:
        return stream.end_capture().instance()

    def launch(self, graph_exec: Any, stream: Any) -> None:
        graph_exec.launch(stream)

    def destroy_graph(self, graph_exec: Any) -> None:
        pass


def load_cuda_api(prefer: Optional[str] = None) -> CudaApi:
    """cuda-python if importable (or `prefer="pycuda"`), else pycuda; MissingDependencyError if neither."""
    order = ["pycuda", "cuda-python"] if prefer == "pycuda" else ["cuda-python", "pycuda"]
    errors = []
    for name in order:
        try:
            if name == "cuda-python":
                try:
                    rt = importlib.import_module("cuda.bindings.runtime")
                except ImportError:
                    rt = importlib.import_module("cuda.cudart")
                return CudaPythonApi(rt)
            importlib.import_module("pycuda.autoinit")
            return PyCudaApi(importlib.import_module("pycuda.driver"))
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise MissingDependencyError(
        "the TensorRT backend needs cuda-python (pip install cuda-python) or pycuda "
        "for device buffers (" + "; ".join(errors) + ")"
    )
