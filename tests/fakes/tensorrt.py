"""One recording stand-in for the `tensorrt` module (and the CUDA memory an engine runs in), for tests.

Neither TensorRT nor a GPU exist on the development machines, so every TensorRT code path of vadedge
(the engine build, refit, plugin loading, the runtime backend) is tested against this fake, never on
hardware. `FakeTensorRT("10.3.0")` exposes the subset of the TensorRT Python API those paths use, with
the version boundaries that matter: BuilderFlag.FP16 / INT8 exist only before 11.0, and a strongly typed
network refuses precision flags at build time (as TensorRT does). Every call is appended to `.calls`.

Plans are `b"PLAN:" + JSON` (the build flags, the parsed ONNX file, weights). A plan whose JSON names an
ONNX model (`FakeTensorRT.plan(onnx=..., batch=...)`) is *executed* by ONNX Runtime: the execution
context reads its inputs from and writes its outputs to the `FakeCuda` memory at the addresses the
code under test bound, so buffer sizes, copies, dynamic shapes, CUDA-graph capture and refit are
checked for real. This builds no engine and checks none of TensorRT's numerics.

The classes are module-level; `FakeTensorRT` hands out subclasses bound to itself (`.fake`), so that
`trt.Builder(logger)` etc. record into the instance the test holds.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from vadedge.runtime.backends.cuda import CudaApi


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
}


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:  # overridden by the code under test
        pass


class Logger(ILogger):
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, severity: int = 2) -> None:
        super().__init__()
        self.severity = severity


@dataclass
class FakeTensor:
    name: str
    shape: tuple
    dtype: DataType = DataType.FLOAT


@dataclass
class FakeParserError:
    node_index: int
    name: str
    operator: str
    text: str

    def desc(self) -> str:
        return self.text

    def node(self) -> int:
        return self.node_index

    def node_name(self) -> str:
        return self.name

    def node_operator(self) -> str:
        return self.operator

    def code(self) -> str:
        return "ErrorCode.UNSUPPORTED_NODE"


class FakeCuda(CudaApi):
    """Device memory as bytearrays keyed by fake pointers; graphs are lists of captured enqueues."""

    name = "fake-cuda"
    supports_graphs = True

    def __init__(self) -> None:
        self.mem: dict[int, bytearray] = {}
        self._next = 0x1000
        self.capturing: Optional[list] = None
        self.log: list[str] = []

    def set_device(self, index: int) -> None:
        self.log.append(f"set_device {index}")

    def device_name(self, index: int) -> str:
        return "Fake GPU"

    def malloc(self, nbytes: int) -> int:
        ptr = self._next
        self._next += nbytes + 256
        self.mem[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        del self.mem[ptr]

    def host_empty(self, shape: tuple, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def free_host(self, array: np.ndarray) -> None:
        pass

    def stream(self) -> Any:
        return "stream"

    def stream_handle(self, stream: Any) -> int:
        return 42

    def destroy_stream(self, stream: Any) -> None:
        self.log.append("destroy_stream")

    def htod(self, dst: int, src: np.ndarray, stream: Any) -> None:
        assert self.capturing is None, "copies must stay outside the captured graph"
        assert src.nbytes <= len(self.mem[dst])
        self.mem[dst][: src.nbytes] = np.ascontiguousarray(src).tobytes()

    def dtoh(self, dst: np.ndarray, src: int, stream: Any) -> None:
        assert self.capturing is None
        dst[...] = np.frombuffer(bytes(self.mem[src][: dst.nbytes]), dst.dtype).reshape(dst.shape)

    def sync(self, stream: Any) -> None:
        pass

    def begin_capture(self, stream: Any) -> None:
        self.capturing = []

    def end_capture(self, stream: Any) -> Any:
        graph, self.capturing = self.capturing, None
        self.log.append("graph captured")
        return graph

    def launch(self, graph: Any, stream: Any) -> None:
        for fn in graph:
            fn()

    def destroy_graph(self, graph: Any) -> None:
        self.log.append("graph destroyed")


class _Bound:
    """Base of the fake's API classes; `fake` is set on the per-instance subclass FakeTensorRT makes."""

    fake: FakeTensorRT


class Weights:
    def __init__(self, a: np.ndarray) -> None:
        self.array = np.asarray(a)
        self.size = self.array.size


class Registry(_Bound):
    def load_library(self, path: str) -> Any:
        self.fake.calls.append(("load_library", path))
        return "handle"


class Builder(_Bound):
    def __init__(self, logger: Any) -> None:
        self.fake.calls.append(("Builder",))
        self.logger = logger

    def get_plugin_registry(self) -> Any:
        return self.fake.Registry()

    def create_network(self, flags: int) -> Any:
        self.fake.calls.append(("create_network", flags))
        return self.fake.Network(flags)

    def create_builder_config(self) -> Any:
        return self.fake.Config()

    def create_optimization_profile(self) -> Any:
        return Profile()

    def build_serialized_network(self, network: Any, config: Any) -> Optional[bytes]:
        self.fake.calls.append(("build_serialized_network",))
        if network.strongly_typed and {"FP16", "INT8", "BF16"} & config.flags:
            self.logger.log(ILogger.Severity.ERROR, "precision flags are not allowed with strongly typed networks")
            return None
        if self.fake.build_fails:
            self.logger.log(ILogger.Severity.ERROR, "Could not find any implementation for node X")
            return None
        return FakeTensorRT.plan(flags=sorted(config.flags), source=network.source)


class Network(_Bound):
    def __init__(self, flags: int) -> None:
        st = self.fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED
        self.strongly_typed = self.fake.major >= 11 or bool(flags & (1 << int(st)))
        self.num_inputs = len(self.fake.inputs)
        self.num_outputs = len(self.fake.outputs)
        self.source: Optional[str] = None

    def get_input(self, i: int) -> FakeTensor:
        return self.fake.inputs[i]

    def get_output(self, i: int) -> FakeTensor:
        return self.fake.outputs[i]

    def mark_weights_refittable(self, name: str) -> bool:
        self.fake.calls.append(("mark_weights_refittable", name))
        return name in self.fake.weights


class Config(_Bound):
    def __init__(self) -> None:
        self.flags: set[str] = set()
        self._cache = None

    def set_memory_pool_limit(self, pool: Any, size: int) -> None:
        self.fake.calls.append(("set_memory_pool_limit", pool.name, size))

    def set_flag(self, flag: Any) -> None:
        self.fake.calls.append(("set_flag", flag.name))
        self.flags.add(flag.name)

    def create_timing_cache(self, data: bytes) -> Any:
        self.fake.calls.append(("create_timing_cache", bytes(data)))
        return TimingCache(bytes(data))

    def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
        self.fake.calls.append(("set_timing_cache", ignore_mismatch))
        self._cache = cache
        return True

    def get_timing_cache(self) -> Any:
        return self._cache

    def add_optimization_profile(self, profile: Any) -> int:
        self.fake.calls.append(("add_optimization_profile", dict(profile.shapes)))
        return 0

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("hardware_compatibility_level", "plugins_to_serialize"):
            self.fake.calls.append((name, value))
        object.__setattr__(self, name, value)


class Profile:
    def __init__(self) -> None:
        self.shapes: dict = {}

    def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


class TimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> bytes:
        return self.data + b"+timings"


class OnnxParser(_Bound):
    def __init__(self, network: Any, logger: Any) -> None:
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, path: str) -> bool:
        self.fake.calls.append(("parse_from_file", path))
        self.network.source = path
        self.num_errors = len(self.fake.parse_errors)
        return not self.fake.parse_errors

    def get_error(self, i: int) -> FakeParserError:
        return self.fake.parse_errors[i]


class Runtime(_Bound):
    def __init__(self, logger: Any) -> None:
        self.logger = logger
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data: bytes) -> Optional[Engine]:
        self.fake.calls.append(("deserialize_cuda_engine", self.engine_host_code_allowed))
        data = bytes(data)
        try:
            spec = json.loads(data[5:] or b"{}") if data.startswith(b"PLAN:") else None
        except ValueError:
            spec = None
        if not isinstance(spec, dict):
            if self.logger is not None:
                self.logger.log(ILogger.Severity.ERROR, "Serialization assertion failed: magic tag")
            return None
        return self.fake.Engine(spec)


class Engine(_Bound):
    """A deserialised plan: refittable weights, and, when the plan names an ONNX model, its I/O tensors."""

    def __init__(self, spec: dict) -> None:
        fake = self.fake
        self.spec = spec
        if "weights" in spec:
            self.weights = {k: np.asarray(v, np.float32) for k, v in spec["weights"].items()}
        else:
            self.weights = {k: np.zeros(n, np.float32) for k, n in fake.weights.items()}
        self.refittable = bool(spec.get("refittable", fake.engine_refittable))
        self.groups = [list(g) for g in spec.get("weight_groups", fake.weight_groups)]
        self.tensors: list[tuple[str, TensorIOMode, tuple, DataType]] = []
        self.sess = None
        if "onnx" in spec:
            import onnxruntime as ort

            self.sess = ort.InferenceSession(spec["onnx"], providers=["CPUExecutionProvider"])
            batch = -1 if spec["batch"] == "dynamic" else int(spec["batch"])
            for io, mode in (
                (self.sess.get_inputs(), TensorIOMode.INPUT),
                (self.sess.get_outputs(), TensorIOMode.OUTPUT),
            ):
                for t in io:
                    if t.name in self.weights:
                        continue
                    shape = tuple(d if isinstance(d, int) else batch for d in t.shape)
                    dtype = DataType.UINT8 if "uint8" in t.type else DataType.FLOAT
                    self.tensors.append((t.name, mode, shape, dtype))

    def serialize(self) -> bytes:
        doc = {**self.spec, "weights": {k: v.tolist() for k, v in self.weights.items()}, "refitted": True}
        return FakeTensorRT.plan(**doc)

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def _t(self, name: str) -> tuple:
        return next(t for t in self.tensors if t[0] == name)

    def get_tensor_name(self, i: int) -> str:
        return self.tensors[i][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._t(name)[1]

    def get_tensor_shape(self, name: str) -> tuple:
        return self._t(name)[2]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._t(name)[3]

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple:
        shape = self._t(name)[2]
        mx = (self.spec["max_batch"],) + shape[1:]
        return ((1,) + shape[1:], mx, mx)

    def create_execution_context(self) -> Context:
        return Context(self, self.fake)


class Context:
    """Runs the engine's ONNX model on the inputs found in fake device memory."""

    def __init__(self, engine: Engine, fake: FakeTensorRT) -> None:
        self.engine, self.fake = engine, fake
        self.addr: dict[str, int] = {}
        self.shapes: dict[str, tuple] = {}
        self.executions = 0

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addr[name] = ptr

    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
        self.fake.calls.append(("set_input_shape", name, tuple(shape)))
        self.shapes[name] = tuple(shape)
        return True

    def _run(self) -> None:
        eng, mem = self.engine, self.fake.cuda.mem
        feed = {}
        for name, mode, shape, dtype in eng.tensors:
            if mode != TensorIOMode.INPUT:
                continue
            shp = self.shapes.get(name, shape)
            np_dtype = np.dtype(_NP[dtype])
            n = int(np.prod(shp)) * np_dtype.itemsize
            feed[name] = np.frombuffer(bytes(mem[self.addr[name]][:n]), np_dtype).reshape(shp)
        feed.update(eng.weights)
        outs = eng.sess.run(None, feed)
        for meta, val in zip(eng.sess.get_outputs(), outs):
            raw = np.ascontiguousarray(val).tobytes()
            mem[self.addr[meta.name]][: len(raw)] = raw
        self.executions += 1

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert stream_handle == 42
        cuda = self.fake.cuda
        self.fake.calls.append(("execute_async_v3", cuda.capturing is not None))
        if cuda.capturing is not None:
            cuda.capturing.append(self._run)
        else:
            self._run()
        return True


class Refitter(_Bound):
    def __init__(self, engine: Engine, logger: Any) -> None:
        self.engine, self.pending = engine, {}

    def get_all_weights(self) -> list[str]:
        return sorted(self.engine.weights)

    def set_named_weights(self, name: str, w: Weights) -> bool:
        self.fake.calls.append(("set_named_weights", name, w.size))
        if name not in self.engine.weights or w.size != self.engine.weights[name].size:
            return False
        self.pending[name] = np.array(w.array, copy=True)
        return True

    def get_missing_weights(self) -> list[str]:
        missing = []
        for group in self.engine.groups:
            if any(n in self.pending for n in group):
                missing += [n for n in group if n not in self.pending]
        return missing

    def refit_cuda_engine(self) -> bool:
        self.fake.calls.append(("refit_cuda_engine",))
        self.engine.weights.update(self.pending)
        return True


class FakeTensorRT:
    """Module-like fake. Knobs: parse_errors, build_fails, inputs/outputs, engine weights and groups, cuda."""

    def __init__(
        self,
        version: str = "10.3.0",
        *,
        inputs: Optional[list[FakeTensor]] = None,
        outputs: Optional[list[FakeTensor]] = None,
        parse_errors: Sequence[FakeParserError] = (),
        build_fails: bool = False,
        weights: Optional[dict[str, int]] = None,
        refittable: bool = True,
        weight_groups: Sequence[Sequence[str]] = (),
        cuda: Optional[FakeCuda] = None,
    ) -> None:
        self.__version__ = version
        self.calls: list[tuple] = []
        self.major = int(version.split(".")[0])
        self.inputs = (
            inputs
            if inputs is not None
            else [FakeTensor("frames", (1, 5, 64, 64, 1), DataType.UINT8), FakeTensor("memory_in", (1, 10, 32))]
        )
        self.outputs = (
            outputs if outputs is not None else [FakeTensor("psnr", (1,)), FakeTensor("memory_out", (1, 10, 32))]
        )
        self.parse_errors = list(parse_errors)
        self.build_fails = build_fails
        self.weights = dict(weights if weights is not None else {"proto.weight": 6, "head.bias": 2})
        self.engine_refittable = refittable
        self.weight_groups = [list(g) for g in weight_groups]
        self.cuda = cuda if cuda is not None else FakeCuda()
        self.DataType, self.MemoryPoolType = DataType, MemoryPoolType
        self.HardwareCompatibilityLevel, self.TensorIOMode = HardwareCompatibilityLevel, TensorIOMode
        self.ILogger, self.Logger, self.Weights = ILogger, Logger, Weights
        flags = ["REFIT", "REFIT_INDIVIDUAL", "REFIT_IDENTICAL", "VERSION_COMPATIBLE", "STRIP_PLAN"]
        if self.major < 11:
            flags = ["FP16", "INT8", "BF16", *flags]
        self.BuilderFlag = enum.IntEnum("BuilderFlag", flags, start=0)
        creation = ["STRONGLY_TYPED"] if self.major >= 11 else ["EXPLICIT_BATCH", "STRONGLY_TYPED"]
        self.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation, start=0)
        for cls in (Registry, Builder, Network, Config, OnnxParser, Runtime, Engine, Refitter):
            setattr(self, cls.__name__, type(cls.__name__, (cls,), {"fake": self}))

    @staticmethod
    def plan(**spec: Any) -> bytes:
        """A serialized fake plan; with onnx=PATH, batch=N|"dynamic", max_batch=N it can be executed."""
        return b"PLAN:" + json.dumps(spec).encode()

    @staticmethod
    def nptype(dtype: DataType) -> type:
        return _NP[DataType(dtype)]

    def get_plugin_registry(self) -> Any:
        return self.Registry()

    def flags_set(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "set_flag"]
