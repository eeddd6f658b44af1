"""A recording stand-in for the `tensorrt` module, for testing builder/refit logic without a GPU.

`FakeTensorRT("10.3.0")` exposes the subset of the TensorRT Python API that `build_engine` and
`refit_engine` use, with the version boundaries that matter: BuilderFlag.FP16 / INT8 exist only before
11.0, and a strongly typed network refuses precision flags at build time (as TensorRT does). Every
call is appended to `.calls` so tests can assert what would have been asked of the real library.
This is a test double: it builds no engine and checks none of TensorRT's numerics.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
       DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.IntEnum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


class _ILogger:
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


@dataclass
class FakeEngine:
    weights: dict
    refittable: bool
    groups: Sequence[Sequence[str]] = ()

    def serialize(self) -> bytes:
        return b"PLAN-REFITTED:" + ",".join(sorted(self.weights)).encode()


class FakeTensorRT:
    """Module-like fake. Knobs: parse_errors, build_fails, inputs/outputs, engine weights and groups."""

    def __init__(self, version: str = "10.3.0", *, inputs: Optional[list[FakeTensor]] = None,
                 outputs: Optional[list[FakeTensor]] = None, parse_errors: Sequence[FakeParserError] = (),
                 build_fails: bool = False, weights: Optional[dict[str, int]] = None, refittable: bool = True,
                 weight_groups: Sequence[Sequence[str]] = ()) -> None:
        self.__version__ = version
        self.calls: list[tuple] = []
        self.major = int(version.split(".")[0])
        self.inputs = inputs if inputs is not None else [FakeTensor("frames", (1, 5, 64, 64, 1), DataType.UINT8),
                                                         FakeTensor("memory_in", (1, 10, 32))]
        self.outputs = outputs if outputs is not None else [FakeTensor("psnr", (1,)),
                                                            FakeTensor("memory_out", (1, 10, 32))]
        self.parse_errors = list(parse_errors)
        self.build_fails = build_fails
        self.weights = dict(weights if weights is not None else {"proto.weight": 6, "head.bias": 2})
        self.engine_refittable = refittable
        self.weight_groups = [list(g) for g in weight_groups]
        self.DataType = DataType
        self.MemoryPoolType = MemoryPoolType
        self.HardwareCompatibilityLevel = HardwareCompatibilityLevel
        self.ILogger = _ILogger
        self.Logger = _ILogger
        flags = ["REFIT", "REFIT_INDIVIDUAL", "REFIT_IDENTICAL", "VERSION_COMPATIBLE", "STRIP_PLAN"]
        if self.major < 11:
            flags = ["FP16", "INT8", "BF16", *flags]
        self.BuilderFlag = enum.IntEnum("BuilderFlag", flags, start=0)
        self.NetworkDefinitionCreationFlag = (enum.IntEnum("NetworkDefinitionCreationFlag", ["STRONGLY_TYPED"], start=0)
                                              if self.major >= 11 else
                                              enum.IntEnum("NetworkDefinitionCreationFlag",
                                                           ["EXPLICIT_BATCH", "STRONGLY_TYPED"], start=0))
        fake = self

        class Weights:
            def __init__(self, a: np.ndarray) -> None:
                self.array = a
                self.size = a.size

        class Builder:
            def __init__(self, logger: Any) -> None:
                fake.calls.append(("Builder",))
                self.logger = logger

            def get_plugin_registry(self) -> Any:
                return Registry()

            def create_network(self, flags: int) -> Any:
                fake.calls.append(("create_network", flags))
                return Network(flags)

            def create_builder_config(self) -> Any:
                return Config()

            def create_optimization_profile(self) -> Any:
                return Profile()

            def build_serialized_network(self, network: Any, config: Any) -> Optional[bytes]:
                fake.calls.append(("build_serialized_network",))
                if network.strongly_typed and {"FP16", "INT8", "BF16"} & config.flags:
                    self.logger.log(_ILogger.Severity.ERROR, "precision flags are not allowed with strongly "
                                                             "typed networks")
                    return None
                if fake.build_fails:
                    self.logger.log(_ILogger.Severity.ERROR, "Could not find any implementation for node X")
                    return None
                return b"PLAN:" + ",".join(sorted(config.flags)).encode()

        class Registry:
            def load_library(self, path: str) -> Any:
                fake.calls.append(("load_library", path))
                return "handle"

        class Network:
            def __init__(self, flags: int) -> None:
                st = getattr(fake.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
                self.strongly_typed = fake.major >= 11 or bool(flags & (1 << int(st)))
                self.num_inputs = len(fake.inputs)
                self.num_outputs = len(fake.outputs)

            def get_input(self, i: int) -> FakeTensor:
                return fake.inputs[i]

            def get_output(self, i: int) -> FakeTensor:
                return fake.outputs[i]

            def mark_weights_refittable(self, name: str) -> bool:
                fake.calls.append(("mark_weights_refittable", name))
                return name in fake.weights

        class Config:
            def __init__(self) -> None:
                self.flags: set[str] = set()
                self._cache = None

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                fake.calls.append(("set_memory_pool_limit", pool.name, size))

            def set_flag(self, flag: Any) -> None:
                fake.calls.append(("set_flag", flag.name))
                self.flags.add(flag.name)

            def create_timing_cache(self, data: bytes) -> Any:
                fake.calls.append(("create_timing_cache", bytes(data)))
                return TimingCache(bytes(data))

            def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
                fake.calls.append(("set_timing_cache", ignore_mismatch))
                self._cache = cache
                return True

            def get_timing_cache(self) -> Any:
                return self._cache

            def add_optimization_profile(self, profile: Any) -> int:
                fake.calls.append(("add_optimization_profile", dict(profile.shapes)))
                return 0

            def __setattr__(self, name: str, value: Any) -> None:
                if name in ("hardware_compatibility_level", "plugins_to_serialize"):
                    fake.calls.append((name, value))
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

        class OnnxParser:
            def __init__(self, network: Any, logger: Any) -> None:
                self.num_errors = 0

            def parse_from_file(self, path: str) -> bool:
                fake.calls.append(("parse_from_file", path))
                self.num_errors = len(fake.parse_errors)
                return not fake.parse_errors

            def get_error(self, i: int) -> FakeParserError:
                return fake.parse_errors[i]

        class Runtime:
            def __init__(self, logger: Any) -> None:
                self.logger = logger
                self.engine_host_code_allowed = False

            def deserialize_cuda_engine(self, data: bytes) -> Optional[FakeEngine]:
                fake.calls.append(("deserialize_cuda_engine", self.engine_host_code_allowed))
                if not bytes(data).startswith(b"PLAN"):
                    self.logger.log(_ILogger.Severity.ERROR, "Serialization assertion failed: magic tag")
                    return None
                return FakeEngine({k: np.zeros(n, np.float32) for k, n in fake.weights.items()},
                                  fake.engine_refittable, fake.weight_groups)

        class Refitter:
            def __init__(self, engine: FakeEngine, logger: Any) -> None:
                self.engine, self.pending = engine, {}

            def get_all_weights(self) -> list[str]:
                return sorted(self.engine.weights)

            def set_named_weights(self, name: str, w: Any) -> bool:
                fake.calls.append(("set_named_weights", name, w.size))
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
                fake.calls.append(("refit_cuda_engine",))
                self.engine.weights.update(self.pending)
                return True

        self.Weights, self.Builder, self.OnnxParser = Weights, Builder, OnnxParser
        self.Runtime, self.Refitter = Runtime, Refitter

    @staticmethod
    def nptype(dtype: DataType) -> type:
        return _NP[DataType(dtype)]

    def flags_set(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "set_flag"]
