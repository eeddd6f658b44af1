"""TensorRT backend: a plain engine file of the bundle, device buffers via `CudaApi`, async execution.

* I/O by tensor name (TensorRT 10/11 API: `num_io_tensors`, `get_tensor_name/mode/shape/dtype`,
  `set_tensor_address`, `set_input_shape`, `execute_async_v3`).
* Buffers are allocated once for the largest batch (the static batch, or the maximum of
  optimisation profile 0 for dynamic engines); host staging buffers are pinned.
* Static-shape engines are replayed as a CUDA graph: one ordinary `execute_async_v3` first (it
  flushes deferred setup), then the enqueue is captured on the backend's own stream and later calls
  launch the graph; the copies stay outside the graph. Dynamic engines execute normally.
* MPN's adapted parameters are fed like any input when the engine has them as inputs; an engine
  built with `refittable=True` from a graph where they are initializers gets them by refit
  (`trt.Refitter.set_named_weights` with the manifest's `input` name as the weights name).

Plugin loading, sidecar validation, deserialisation and refit are `vadedge.runtime.engine`'s (shared
with the exporter). Neither TensorRT nor a GPU exist on the development machines: this module is
tested against the fake `tensorrt` module and `FakeCuda` of tests/fakes/tensorrt.py, never on hardware.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ...bundle import Bundle, BundleError, EngineSpec
from ...errors import ConfigError
from ..engine import (
    deserialize_engine,
    import_tensorrt,
    load_plugin_libraries,
    load_sidecar,
    make_logger,
    refit_weights,
    sidecar_path,
    sidecar_plugin_libraries,
)
from .base import Backend, BackendOutput
from .cuda import CudaApi, load_cuda_api

logger = logging.getLogger(__name__)


def pick_engine(
    bundle: Bundle, engine: Optional[str | Path], device_name: str, precision: Optional[str] = None
) -> tuple[Path, Optional[EngineSpec]]:
    """The engine file to load and its manifest entry: explicit, else the bundle's best match for this GPU."""
    if engine is not None:
        path = Path(engine)
        if not path.is_absolute() and not path.exists():
            path = bundle.path / path
        if not path.is_file():
            raise BundleError(f"TensorRT engine {engine} does not exist")
        entry = next((e for e in bundle.manifest.engines if e.file == path.name), None)
        return path, entry
    engines = bundle.manifest.engines
    if not engines:
        raise BundleError(
            f"bundle {bundle.path} has no TensorRT engine: build one on this device with "
            f"`vadedge export MODEL --engine trt` or pass --engine FILE"
        )

    def rank(e: EngineSpec) -> tuple:
        return (e.device == device_name, precision is None or e.precision == precision)

    best = max(engines, key=rank)
    if best.device not in (None, device_name):
        import warnings

        warnings.warn(
            f"engine {best.file} was built for {best.device}, this GPU is {device_name}; "
            f"TensorRT engines are not portable across GPUs",
            stacklevel=3,
        )
    path = bundle.file(best.file, "engine")
    if not path.is_file():
        raise BundleError(f"bundle {bundle.path}: engine file {best.file} is missing")
    return path, best


class _Tensor:
    """One engine I/O tensor with its device buffer and pinned host staging buffer."""

    def __init__(self, name: str, is_input: bool, shape: tuple, dtype: np.dtype) -> None:
        self.name, self.is_input, self.shape, self.dtype = name, is_input, shape, dtype
        self.device = 0
        self.host: Optional[np.ndarray] = None


class TensorRTBackend(Backend):
    """Runs a deserialised engine; see the module docstring."""

    name = "tensorrt"
    bundle: Bundle  # never None here: an engine always belongs to a bundle

    def __init__(
        self,
        bundle: Bundle,
        *,
        engine: Optional[str | Path] = None,
        device: str = "cuda:0",
        precision: Optional[str] = None,
        plugin_libraries: Sequence[str] = (),
        cuda_graphs: bool = True,
        trt: Any = None,
        cuda: Optional[CudaApi] = None,
        dlopen: Any = None,
    ) -> None:
        super().__init__(bundle)
        self.trt = import_tensorrt(trt)
        self.cuda = cuda or load_cuda_api()
        kind, _, idx = device.partition(":")
        if kind not in ("cuda", "gpu"):
            raise ConfigError(f"the TensorRT backend runs on cuda[:N], not {device!r}")
        self.device_index = int(idx or 0)
        self.cuda.set_device(self.device_index)
        self.device = f"cuda:{self.device_index}"
        self.gpu_name = self.cuda.device_name(self.device_index)
        self.engine_path, self.engine_entry = pick_engine(
            bundle, engine, self.gpu_name, precision or bundle.manifest.precision
        )
        info = self._checked_sidecar()
        self.logger = make_logger(self.trt)
        libs = list(plugin_libraries) + [str(p) for p in sidecar_plugin_libraries(self.engine_path, info)]
        self.plugins = load_plugin_libraries(self.trt, libs, dlopen=dlopen)
        entry_vc = self.engine_entry is not None and self.engine_entry.version_compatible
        self.engine = deserialize_engine(
            self.trt, self.engine_path, self.logger, version_compatible=bool(info.get("version_compatible") or entry_vc)
        )
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()
        self._tensors = self._discover()
        self._check_io()
        self._allocate()
        self.use_graphs = bool(cuda_graphs and not self.dynamic and self.cuda.supports_graphs)
        self._graph: Any = None
        self._warm = False
        self.graph_launches = 0

    def _checked_sidecar(self) -> dict:
        """The engine's sidecar, validated (SHA-256, TensorRT major.minor, GPU) before TensorRT reads the plan.

        Required when the bundle's manifest names one (every engine `vadedge export` builds); an engine
        passed by hand without a sidecar (say from trtexec) loads with a warning, unchecked.
        """
        if sidecar_path(self.engine_path).is_file() or (self.engine_entry is not None and self.engine_entry.sidecar):
            return load_sidecar(self.engine_path, tensorrt_version=str(self.trt.__version__), device_name=self.gpu_name)
        logger.warning(
            "engine %s has no sidecar: its SHA-256, TensorRT version and GPU are not checked", self.engine_path.name
        )
        return {}

    # ---------------------------------------------------------------- engine I/O
    def _discover(self) -> dict[str, _Tensor]:
        trt, eng = self.trt, self.engine
        out = {}
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            is_input = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(int(d) for d in eng.get_tensor_shape(name))
            out[name] = _Tensor(name, is_input, shape, np.dtype(trt.nptype(eng.get_tensor_dtype(name))))
        return out

    def _check_io(self) -> None:
        names = set(self._tensors)
        need = (
            [self.io.frames]
            + [i for _, i, _ in self.io.state]
            + [t for _, t in self.io.scores]
            + [o for _, _, o in self.io.state]
            + [t for _, t in self.io.side]
        )
        missing = [n for n in need if n not in names]
        if missing:
            raise BundleError(
                f"engine {self.engine_path} lacks tensors {missing} named in vadedge.json (has {sorted(names)})"
            )
        frames = self._tensors[self.io.frames]
        self.dynamic = any(d < 0 for t in self._tensors.values() if t.is_input for d in t.shape)
        if self.dynamic:
            self.max_batch = int(self.engine.get_tensor_profile_shape(self.io.frames, 0)[2][0])
        else:
            self.max_batch = int(frames.shape[0])
        self.param_inputs = {n: t for n, t in self.io.params if t in names}
        self.refit_params = {n: t for n, t in self.io.params if t not in names}
        manifest_rank = {p.input: len(p.shape) for p in self.bundle.manifest.graph.params}
        self._batched = set()
        for t in self._tensors.values():
            if t.name in manifest_rank:
                if len(t.shape) == manifest_rank[t.name] + 1:
                    self._batched.add(t.name)
            elif t.shape and (t.shape[0] < 0 or t.shape[0] == self.max_batch):
                self._batched.add(t.name)

    def _full_shape(self, t: _Tensor, batch: int) -> tuple:
        return tuple(batch if (i == 0 and d < 0) else d for i, d in enumerate(t.shape))

    def _allocate(self) -> None:
        for t in self._tensors.values():
            shape = self._full_shape(t, self.max_batch)
            if any(d < 0 for d in shape):
                raise BundleError(f"engine tensor {t.name} has a dynamic dimension other than the batch: {t.shape}")
            t.host = self.cuda.host_empty(shape, t.dtype)
            t.device = self.cuda.malloc(t.host.nbytes)
            self.context.set_tensor_address(t.name, t.device)

    @property
    def batch(self) -> Optional[int]:
        return None if self.dynamic else self.max_batch

    @property
    def params_batched(self) -> bool:
        return all(t in self._batched for t in self.param_inputs.values())

    def describe(self) -> str:
        mode = "CUDA graph" if self.use_graphs else ("dynamic batch" if self.dynamic else "static")
        return f"tensorrt {self.engine_path.name} on {self.gpu_name} ({mode}, {self.cuda.name})"

    # ---------------------------------------------------------------- execution
    def _stage(self, name: str, value: np.ndarray, batch: int) -> None:
        t = self._tensors[name]
        value = np.asarray(value)
        assert t.host is not None, "host buffers are allocated when the engine is loaded"
        view = t.host[:batch] if t.name in self._batched else t.host
        expected = view.shape
        if value.shape != expected:
            raise ConfigError(f"input {name}: expected shape {expected}, got {value.shape}")
        view[...] = value.astype(t.dtype, copy=False)
        self.cuda.htod(t.device, view, self.stream)
        if self.dynamic and t.name in self._batched:
            self.context.set_input_shape(name, view.shape)

    def _execute(self) -> None:
        handle = self.cuda.stream_handle(self.stream)
        if not self.use_graphs:
            if not self.context.execute_async_v3(handle):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            return
        if self._graph is None:
            if not self._warm:  # an ordinary enqueue first flushes deferred updates before capture
                if not self.context.execute_async_v3(handle):
                    raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
                self.cuda.sync(self.stream)
                self._warm = True
                return
            self.cuda.begin_capture(self.stream)
            try:
                ok = self.context.execute_async_v3(handle)
            finally:
                graph = self.cuda.end_capture(self.stream)
            if not ok:
                self.cuda.destroy_graph(graph)
                raise RuntimeError("TensorRT execute_async_v3 failed during CUDA graph capture")
            self._graph = graph
        self.cuda.launch(self._graph, self.stream)
        self.graph_launches += 1

    def run(
        self,
        frames: np.ndarray,
        state: Mapping[str, np.ndarray],
        params: Optional[Mapping[str, np.ndarray]] = None,
        side: Optional[Mapping[str, np.ndarray]] = None,
    ) -> BackendOutput:
        b = int(frames.shape[0])
        if self.dynamic and b > self.max_batch:
            raise ConfigError(f"batch {b} exceeds the engine's profile maximum {self.max_batch}")
        if not self.dynamic and b != self.max_batch:
            raise ConfigError(f"the engine takes batches of exactly {self.max_batch}, got {b}")
        self._stage(self.io.frames, frames, b)
        for name, inp, _ in self.io.state:
            self._stage(inp, state[name], b)
        for name, inp in self.io.side:
            if side is None or name not in side:
                raise ConfigError(f"the engine needs the side input '{name}'")
            self._stage(inp, side[name], b)
        for name, inp in self.param_inputs.items():
            if params is None or name not in params:
                raise ConfigError(f"the engine needs the adapted parameter '{name}'")
            self._stage(inp, params[name], b)
        self._execute()
        outputs = {}
        for t in self._tensors.values():
            if t.is_input:
                continue
            assert t.host is not None, "host buffers are allocated when the engine is loaded"
            view = t.host[:b] if t.name in self._batched else t.host
            self.cuda.dtoh(view, t.device, self.stream)
            outputs[t.name] = view
        self.cuda.sync(self.stream)
        return self._split({k: np.array(v, copy=True) for k, v in outputs.items()})

    def set_params(self, params: Mapping[str, np.ndarray]) -> bool:
        """Refit parameters that are engine weights; False when they are fed as inputs instead."""
        if not self.refit_params:
            return False
        self.cuda.sync(self.stream)
        refit_weights(
            self.trt,
            self.engine,
            {
                weights_name: np.ascontiguousarray(params[name], dtype=np.float32)
                for name, weights_name in self.refit_params.items()
            },
            self.logger,
        )
        if self._graph is not None:  # recapture after new weights
            self.cuda.destroy_graph(self._graph)
            self._graph = None
        return True

    def close(self) -> None:
        if getattr(self, "_graph", None) is not None:
            self.cuda.destroy_graph(self._graph)
            self._graph = None
        for t in getattr(self, "_tensors", {}).values():
            if t.device:
                self.cuda.free(t.device)
                t.device = 0
            if t.host is not None:
                self.cuda.free_host(t.host)
                t.host = None
        if getattr(self, "stream", None) is not None:
            self.cuda.destroy_stream(self.stream)
            self.stream = None
