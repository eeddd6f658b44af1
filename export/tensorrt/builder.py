"""`build_engine`: ONNX -> plain TensorRT engine file + JSON sidecar, for TensorRT 10.x and 11.x.

Two code paths, chosen by the TensorRT version (NVIDIA docs cited in docs/tensorrt.md):
* TensorRT >= 10.12 (and 11.x, where it is the only mode): a strongly typed network
  (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`); precision comes from the ONNX graph itself
  (FP16 tensors from the FP16 export, Q/DQ nodes from the INT8 export) and no precision flags are set.
* TensorRT 10.x < 10.12 (JetPack 6 ships 10.3): the builder-flag path; `BuilderFlag.FP16` for FP16,
  `BuilderFlag.INT8` for an explicitly quantised (Q/DQ) graph. Implicit INT8 calibration is not
  offered (calibrators were deprecated in 10.1 and removed in 11).
Common to both: ONNX parser with every parser error reported, timing cache load/save, optional version
compatibility / hardware compatibility, refittable engines (REFIT or REFIT_INDIVIDUAL), plugin
libraries loaded into the plugin registry, and an optimisation profile when the batch is dynamic.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from vadedge.errors import ConfigError
from vadedge.runtime.engine import load_plugin_libraries, sha256_file, write_sidecar

from ._trt import (
    STRONG_TYPING_FROM,
    STRONG_TYPING_ONLY_FROM,
    EngineError,
    cuda_device_info,
    dtype_name,
    import_tensorrt,
    make_logger,
    trt_version,
)

PRECISIONS = ("fp32", "fp16", "int8")
HARDWARE_LEVELS = {"ampere_plus": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}
PLUGIN_OP_TYPES = ("VadMemoryRead", "VadMemoryUpdate", "VadPrototypeFormation")


def graph_precision(onnx_path: str | Path) -> Optional[str]:
    """ "int8" if the graph has QuantizeLinear nodes, "fp16" if it computes in float16, else "fp32".

    None when the onnx package is not installed (the check is then skipped).
    """
    try:
        import onnx
        from onnx import TensorProto
    except ImportError:
        return None
    model = onnx.load(str(onnx_path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    for fn in model.functions:
        ops |= {n.op_type for n in fn.node}
    if "QuantizeLinear" in ops:
        return "int8"
    f16 = TensorProto.FLOAT16
    if any(t.data_type == f16 for t in model.graph.initializer):
        return "fp16"
    values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    if any(v.type.tensor_type.elem_type == f16 for v in values):
        return "fp16"
    for n in model.graph.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute):
            return "fp16"
    return "fp32"


def _check_precision(precision: str, graph: Optional[str], strong: bool, onnx_path: Path) -> None:
    if graph is None:
        warnings.warn(
            "onnx is not installed: cannot check that the ONNX graph matches the requested precision", stacklevel=3
        )
        return
    if graph == precision or (not strong and precision == "fp16" and graph == "fp32"):
        return
    if precision == "int8":
        raise ConfigError(
            f"{onnx_path.name} has no Q/DQ nodes: INT8 engines are built only from an explicitly "
            f"quantised graph (vadedge export --precision int8 --calib-data DIR writes model.int8.onnx)"
        )
    if strong:
        raise ConfigError(
            f"{onnx_path.name} computes in {graph} but {precision} was requested: a strongly typed "
            f"network takes its precision from the graph; build from model.{precision}.onnx "
            f"(model.onnx for fp32)"
        )
    raise ConfigError(f"{onnx_path.name} computes in {graph}; build it with precision={graph!r}")


def network_from_onnx(
    trt: Any, builder: Any, log: Any, onnx_path: Path, strong: bool, have_plugins: bool
) -> tuple[Any, Any]:
    """Step 2: (network, parser), the network (strongly typed or not) parsed from `onnx_path`.

    The parser is returned because it must outlive the build; a failed parse reports every parser
    error, with a hint when plugin nodes were met without plugin libraries."""
    flags = 0
    if strong:
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if flag is not None:  # 11.x keeps the flag only for API compatibility
            flags |= 1 << int(flag)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    if parser.parse_from_file(str(onnx_path)):
        return network, parser
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node_name() if hasattr(err, "node_name") else err.node()
        op = err.node_operator() if hasattr(err, "node_operator") else "?"
        lines.append(f"  - node {node!s} ({op}): {err.desc()} [{err.code()}]")
    text = "\n".join(lines) or "  (the parser reported no details)"
    hint = ""
    if any(p in text for p in PLUGIN_OP_TYPES) and not have_plugins:
        hint = (
            "\nhint: this graph has vadedge plugin nodes; pass plugin_libraries=[.../libvadedge_plugins.so] "
            "(vadedge export --plugins builds them with build-plugins) or export without --plugins"
        )
    raise EngineError(f"TensorRT could not parse {onnx_path.name}:\n{text}{hint}")


def _tensors(trt: Any, network: Any, which: str) -> list[dict]:
    count = network.num_inputs if which == "input" else network.num_outputs
    get = network.get_input if which == "input" else network.get_output
    out = []
    for i in range(count):
        t = get(i)
        out.append({"name": t.name, "shape": [int(d) for d in t.shape], "dtype": dtype_name(trt, t.dtype)})
    return out


def _profile(builder: Any, config: Any, inputs: list[dict], batch_profile: tuple[int, int, int]) -> Optional[list[int]]:
    dynamic = [t for t in inputs if any(d < 0 for d in t["shape"])]
    if not dynamic:
        return None
    lo, opt, hi = batch_profile
    if not 1 <= lo <= opt <= hi:
        raise ConfigError(f"batch_profile must be (min, opt, max) with 1 <= min <= opt <= max, got {batch_profile}")
    profile = builder.create_optimization_profile()
    for t in dynamic:
        shape = t["shape"]
        if any(d < 0 for d in shape[1:]):
            raise ConfigError(
                f"input {t['name']} has dynamic dimensions other than the batch ({shape}); "
                f"export with static spatial shapes"
            )
        rest = list(shape[1:])
        profile.set_shape(t["name"], [lo, *rest], [opt, *rest], [hi, *rest])
    config.add_optimization_profile(profile)
    return [lo, opt, hi]


@dataclass
class BuildConfig:
    """What step 3 made: the IBuilderConfig and the facts the sidecar records about it."""

    config: Any
    builder_flags: list[str] = field(default_factory=list)
    refit_names: list[str] = field(default_factory=list)
    batch_profile: Optional[list[int]] = None
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)


def load_build_plugins(trt: Any, builder: Any, libraries: Sequence[Path], dlopen: Any) -> list[dict]:
    """Step 1: plugin libraries into the builder's registry (before parsing, so the parser finds them)."""
    return load_plugin_libraries(trt, libraries, registry=builder.get_plugin_registry(), dlopen=dlopen)


def create_config(
    trt: Any,
    builder: Any,
    network: Any,
    *,
    precision: str,
    strong: bool,
    workspace_mb: int,
    version_compatible: bool,
    hardware_compatibility: Optional[str],
    refittable: bool | Iterable[str],
    plugins: list[dict],
    batch_profile: tuple[int, int, int],
    timing_cache: Optional[Path],
) -> BuildConfig:
    """Step 3: the builder config: workspace, precision flags (10.x flag path only), compatibility,
    refit, serialised plugins, the optimisation profile for a dynamic batch, the timing cache."""
    config = builder.create_builder_config()
    out = BuildConfig(config)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)

    def set_flag(name: str) -> None:
        config.set_flag(getattr(trt.BuilderFlag, name))
        out.builder_flags.append(name)

    if not strong:
        if precision == "fp16":
            set_flag("FP16")
        elif precision == "int8":
            set_flag("INT8")  # Q/DQ graph: explicit quantisation; unquantised layers stay FP32
    if version_compatible:
        set_flag("VERSION_COMPATIBLE")
        if plugins:  # a version-compatible plan carries its plugin libraries (loadLibrary variant only)
            static = [p["file"] for p in plugins if p["loader"] != "registry"]
            if static:
                raise ConfigError(
                    f"{', '.join(static)} registers its plugins statically; a version-compatible "
                    f"engine serialises its plugin libraries and needs the loadLibrary variant "
                    f"(libvadedge_plugins_dynamic.so)"
                )
            config.plugins_to_serialize = [p["path"] for p in plugins]
    if hardware_compatibility:
        level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVELS[hardware_compatibility], None)
        if level is None:
            raise ConfigError(f"TensorRT {trt.__version__} has no {hardware_compatibility} hardware compatibility")
        config.hardware_compatibility_level = level
    if refittable is True:
        set_flag("REFIT")
    elif refittable not in (False, None):
        out.refit_names = [str(n) for n in refittable]  # type: ignore[union-attr]
        if not out.refit_names:
            raise ConfigError("refittable: give True or a non-empty list of weight names")
        set_flag("REFIT_INDIVIDUAL")
        unknown = [n for n in out.refit_names if not network.mark_weights_refittable(n)]
        if unknown:
            raise ConfigError(
                f"these weights are not in the network (ONNX initializer names expected): {', '.join(unknown)}"
            )
    out.inputs, out.outputs = _tensors(trt, network, "input"), _tensors(trt, network, "output")
    out.batch_profile = _profile(builder, config, out.inputs, batch_profile)
    if timing_cache is not None:
        data = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False)
    return out


def build_plan(builder: Any, network: Any, config: Any, log: Any, onnx_path: Path) -> Any:
    """Step 4: the serialised plan; a failed build quotes TensorRT's last logged errors."""
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        errors = "\n".join(f"  - {e}" for e in log.errors()[-10:]) or "  (no error was logged)"
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path.name}:\n{errors}")
    return plan


def save_engine(plan: Any, engine_path: Path, config: Any, timing_cache: Optional[Path]) -> None:
    """Step 5a: the plan (plain, no header) and the updated timing cache, each written atomically."""
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(memoryview(plan))
    os.replace(tmp, engine_path)
    if timing_cache is not None:
        serialized = config.get_timing_cache().serialize()
        cache_tmp = Path(str(timing_cache) + ".tmp")
        cache_tmp.write_bytes(bytes(memoryview(serialized)))
        os.replace(cache_tmp, timing_cache)


def _check_options(onnx_path: Path, precision: str, hardware_compatibility: Optional[str], workspace_mb: int) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if not onnx_path.is_file():
        raise ConfigError(f"ONNX model {onnx_path} does not exist")
    if hardware_compatibility is not None and hardware_compatibility not in HARDWARE_LEVELS:
        raise ConfigError(
            f"hardware_compatibility must be one of {sorted(HARDWARE_LEVELS)} or None, got {hardware_compatibility!r}"
        )
    if workspace_mb < 1:
        raise ConfigError(f"workspace_mb must be >= 1, got {workspace_mb}")


def _strongly_typed(trt: Any, forced: Optional[bool]) -> bool:
    """The network mode: strongly typed from TensorRT 10.12 on (only mode in 11.x) unless forced on 10.x."""
    strong = trt_version(trt) >= STRONG_TYPING_FROM if forced is None else bool(forced)
    if not strong and trt_version(trt) >= STRONG_TYPING_ONLY_FROM:
        raise ConfigError(f"TensorRT {trt.__version__} builds strongly typed networks only")
    return strong


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp16",
    timing_cache: str | Path | None = None,
    version_compatible: bool = False,
    hardware_compatibility: Optional[str] = None,
    refittable: bool | Iterable[str] = False,
    plugin_libraries: Sequence[str | Path] = (),
    workspace_mb: int = 1024,
    batch_profile: tuple[int, int, int] = (1, 1, 8),
    strongly_typed: Optional[bool] = None,
    device_info: Optional[dict] = None,
    verbose: bool = False,
    trt: Any = None,
    dlopen: Any = ctypes.CDLL,
) -> dict:
    """Build `engine_path` (a plain serialized plan) from `onnx_path` and write `<engine>.json` beside it.

    precision: "fp32" | "fp16" | "int8" - must match the graph on the strongly typed path (build the
        FP16 export for fp16, the Q/DQ export for int8); the 10.x flag path can also build fp16 from fp32.
    timing_cache: file read before and written after the build (created if missing).
    version_compatible: BuilderFlag.VERSION_COMPATIBLE (newer TensorRT of the same major, TRT 10 -> 11).
    hardware_compatibility: None | "ampere_plus" | "same_compute_capability" (not on Jetson).
    refittable: True -> BuilderFlag.REFIT (all weights); a list of ONNX initializer names ->
        BuilderFlag.REFIT_INDIVIDUAL with only those weights refittable (MPN's adapted parameters).
    plugin_libraries: vadedge plugin libraries (libvadedge_plugins.so, or the _dynamic variant, which is
        required for version-compatible engines); loaded into the plugin registry before parsing.
    batch_profile: (min, opt, max) batch of the optimisation profile when the graph's batch is dynamic.
    strongly_typed: None = by version (>= 10.12); True/False to force a path on 10.x.
    device_info, trt, dlopen: injection points for tests (TensorRT cannot run without a GPU).
    Returns the sidecar dict.

    The steps, in the order of Polygraphy's loaders (docs/tensorrt.md says why Polygraphy itself is
    not used): plugins -> network from ONNX -> config -> build -> save engine + sidecar.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    cache = Path(timing_cache) if timing_cache is not None else None
    _check_options(onnx_path, precision, hardware_compatibility, workspace_mb)
    trt = import_tensorrt(trt)
    strong = _strongly_typed(trt, strongly_typed)
    _check_precision(precision, graph_precision(onnx_path), strong, onnx_path)
    if hardware_compatibility and platform.machine() == "aarch64":
        warnings.warn(
            "hardware compatibility is documented as unsupported on JetPack; the build may fail", stacklevel=2
        )

    log = make_logger(trt, verbose)
    builder = trt.Builder(log)
    plugins = load_build_plugins(trt, builder, [Path(p) for p in plugin_libraries], dlopen)
    network, _parser = network_from_onnx(trt, builder, log, onnx_path, strong, bool(plugins))
    built = create_config(
        trt,
        builder,
        network,
        precision=precision,
        strong=strong,
        workspace_mb=workspace_mb,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
        refittable=refittable,
        plugins=plugins,
        batch_profile=batch_profile,
        timing_cache=cache,
    )
    plan = build_plan(builder, network, built.config, log, onnx_path)
    save_engine(plan, engine_path, built.config, cache)
    return write_sidecar(
        engine_path,
        _sidecar_facts(
            trt,
            onnx_path,
            built,
            precision=precision,
            strong=strong,
            plugins=plugins,
            version_compatible=version_compatible,
            hardware_compatibility=hardware_compatibility,
            refittable=refittable,
            workspace_mb=workspace_mb,
            device_info=device_info,
        ),
    )


def _sidecar_facts(
    trt: Any,
    onnx_path: Path,
    built: BuildConfig,
    *,
    precision: str,
    strong: bool,
    plugins: list[dict],
    version_compatible: bool,
    hardware_compatibility: Optional[str],
    refittable: bool | Iterable[str],
    workspace_mb: int,
    device_info: Optional[dict],
) -> dict:
    """Step 5b: the build facts a runtime checks before loading the engine (schema in docs/tensorrt.md)."""
    batches = {t["shape"][0] for t in built.inputs if t["shape"]}
    shipped = [{k: v for k, v in p.items() if k != "path"} for p in plugins]  # no build-machine paths
    return {
        "onnx": onnx_path.name,
        "onnx_sha256": sha256_file(onnx_path),
        "precision": precision,
        "tensorrt": str(trt.__version__),
        "strongly_typed": strong,
        "builder_flags": built.builder_flags,
        "device": device_info if device_info is not None else (cuda_device_info() or {"name": "unknown"}),
        "platform": platform.machine(),
        "batch": "dynamic" if built.batch_profile else (batches.pop() if len(batches) == 1 else None),
        "batch_profile": built.batch_profile,
        "version_compatible": bool(version_compatible),
        "hardware_compatibility": hardware_compatibility,
        "refittable": built.refit_names if built.refit_names else bool(refittable),
        "plugins": shipped,
        "plugin_libraries": [p["file"] for p in plugins],  # file names, looked up beside the engine
        "workspace_mb": int(workspace_mb),
        "inputs": built.inputs,
        "outputs": built.outputs,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
