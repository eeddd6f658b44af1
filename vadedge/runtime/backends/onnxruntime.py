"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

The vadedge-domain nodes (MemoryRead / MemoryUpdate) are model-local ONNX functions, which ONNX
Runtime inlines, so the plain CPU wheel runs every bundle. On a GPU build (`onnxruntime-gpu`)
`device="cuda:N"` selects the CUDA provider and `device="tensorrt:N"` the TensorRT provider
(with CUDA and CPU as fallbacks for unsupported subgraphs); plugin libraries for graphs exported
with `--plugins` reach TensorRT through `trt_extra_plugin_lib_paths`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..._optional import require
from ...bundle import Bundle, BundleError, GraphSpec, check_graph_io
from ...errors import ConfigError
from .base import Backend, BackendOutput, GraphIO

ProviderSpec = Any  # a provider name or (name, options) as onnxruntime accepts them
CPU = ("CPUExecutionProvider",)


def make_session(
    model: Union[str, Path, bytes],
    *,
    threads: Optional[int] = None,
    optimize: bool = True,
    providers: Sequence[ProviderSpec] = CPU,
    session_config: Optional[Mapping[str, str]] = None,
    profile_prefix: Optional[str] = None,
    log_severity: int = 3,
    ort: Any = None,
) -> Any:
    """The one place vadedge builds an `onnxruntime.InferenceSession` (runtime, export, calibration, bench).

    model: a file path or serialized ONNX bytes. threads: intra-op threads with one inter-op thread
    (None = ONNX Runtime's default). optimize=False disables graph optimisation (keeps every tensor
    named, as the I/O check and the MAC counter need). session_config: extra session config entries
    (e.g. session.intra_op.allow_spinning=0). profile_prefix: turn on ORT's profiler writing there.
    Errors of ONNX Runtime itself propagate; callers wrap them into their own message.
    """
    ort = ort or require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = int(log_severity)
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(profile_prefix)
    for key, value in (session_config or {}).items():
        opts.add_session_config_entry(str(key), str(value))
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=list(providers))


def parse_device(device: str) -> tuple[str, int]:
    """'cpu' | 'cuda[:N]' | 'tensorrt[:N]' (alias 'trt') -> (kind, index)."""
    kind, _, idx = (device or "cpu").lower().partition(":")
    kind = {"gpu": "cuda", "trt": "tensorrt"}.get(kind, kind)
    if kind not in ("cpu", "cuda", "tensorrt"):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda[:N] or tensorrt[:N]")
    try:
        return kind, int(idx) if idx else 0
    except ValueError:
        raise ConfigError(f"bad device index in {device!r}") from None


def default_providers(
    device: str,
    *,
    precision: str = "fp32",
    plugin_libraries: Sequence[str] = (),
    cache_dir: Optional[Path] = None,
    provider_options: Optional[Mapping] = None,
) -> list[ProviderSpec]:
    """Execution providers for a device, most specific first, CPU last."""
    kind, idx = parse_device(device)
    extra = dict(provider_options or {})
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": idx, **(extra if kind == "cuda" else {})})
    if kind == "cuda":
        return [cuda, "CPUExecutionProvider"]
    trt_opts: dict[str, Any] = {
        "device_id": idx,
        "trt_fp16_enable": precision == "fp16",
        "trt_int8_enable": precision == "int8",
    }
    if cache_dir is not None:
        trt_opts.update(
            trt_engine_cache_enable=True,
            trt_engine_cache_path=str(cache_dir),
            trt_timing_cache_enable=True,
            trt_timing_cache_path=str(cache_dir),
        )
    if plugin_libraries:
        trt_opts["trt_extra_plugin_lib_paths"] = ";".join(str(p) for p in plugin_libraries)
    trt_opts.update(extra)
    return [("TensorrtExecutionProvider", trt_opts), cuda, "CPUExecutionProvider"]


def user_cache_dir(kind: str, bundle: Bundle) -> Path:
    """~/.cache/vadedge/<kind>/<bundle folder name>-<hash of its path> (bundles may be read-only)."""
    import hashlib
    import os

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vadedge" / kind
    tag = hashlib.sha1(str(bundle.path.resolve()).encode()).hexdigest()[:10]
    return root / f"{bundle.path.name}-{tag}"


class OnnxRuntimeBackend(Backend):
    """Runs `model.<precision>.onnx` of a bundle in an onnxruntime.InferenceSession."""

    name = "onnxruntime"
    model_path: Optional[Path]  # None for a model given as bytes

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "cpu",
        precision: Optional[str] = None,
        providers: Optional[Sequence[ProviderSpec]] = None,
        threads: Optional[int] = None,
        plugin_libraries: Sequence[str] = (),
        provider_options: Optional[Mapping] = None,
        cache_dir: Optional[Path] = None,
        ort: Any = None,
        session_config: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(bundle)
        ort = ort or require("onnxruntime")
        self.precision = precision or bundle.precision  # default: what the bundle was exported to run
        path = self.model_path = bundle.model_file(self.precision)
        if providers is None:
            providers = default_providers(
                device,
                precision=self.precision,
                plugin_libraries=plugin_libraries,
                cache_dir=cache_dir or user_cache_dir("ort-trt", bundle),
                provider_options=provider_options,
            )
        available = set(ort.get_available_providers())
        missing = [
            p if isinstance(p, str) else p[0] for p in providers if (p if isinstance(p, str) else p[0]) not in available
        ]
        if missing:
            raise ConfigError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: "
                f"{', '.join(sorted(available))}); for GPUs install onnxruntime-gpu, or use "
                f"--device cpu"
            )
        try:
            self.session = make_session(
                path, threads=threads, providers=providers, session_config=session_config, ort=ort
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise BundleError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.device = device
        self._opened()
        self._check_io(bundle, path)

    @classmethod
    def for_model(
        cls,
        model: Union[str, Path, bytes],
        graph: Union[GraphSpec, Mapping],
        *,
        precision: str = "fp32",
        threads: Optional[int] = None,
        profile_prefix: Optional[str] = None,
    ) -> OnnxRuntimeBackend:
        """ONNX Runtime on the CPU for a model and its `graph` section, without the bundle's manifest check.

        The exporter's score calibration and INT8 calibration run the graph they are writing (the
        finished bundle then gets the full model-vs-manifest check, `export.verify.check_bundle`);
        `vadedge.bench.profile` runs a bundle's model with ORT's profiler on (`profile_prefix`).
        """
        self = cls.__new__(cls)
        Backend.__init__(self, None, GraphIO.from_graph(graph))
        self.precision = precision
        self.model_path = None if isinstance(model, bytes) else Path(model)
        self.label = "model" if self.model_path is None else f"model {self.model_path}"
        try:
            self.session = make_session(model, threads=threads, profile_prefix=profile_prefix)
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise BundleError(f"ONNX Runtime cannot load {self.label}: {exc}") from exc
        self._opened()
        return self

    def _opened(self) -> None:
        """Read the session's I/O (after `self.session` is set)."""
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        self._outputs = [o.name for o in self.session.get_outputs()]
        shapes = dict(self.io.param_shapes)
        self._params_batched = all(
            t in self._inputs and len(self._inputs[t].shape) == len(shapes[n]) + 1 for n, t in self.io.params
        )

    def _check_io(self, bundle: Bundle, path: Path) -> None:
        """The same model-vs-manifest check as `vadedge info`, on the session that will run."""
        check_graph_io(f"bundle {bundle.path}: {path.name}", self.session.get_inputs(), self._outputs, bundle.manifest)

    @property
    def params_batched(self) -> bool:
        return self._params_batched

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def describe(self) -> str:
        return f"onnxruntime {self.precision} ({', '.join(self.providers)})"

    def run(
        self,
        frames: np.ndarray,
        state: Mapping[str, np.ndarray],
        params: Optional[Mapping[str, np.ndarray]] = None,
        side: Optional[Mapping[str, np.ndarray]] = None,
    ) -> BackendOutput:
        feed = self.io.feeds(frames, state, params, side)
        wanted = self.io.output_names
        wanted = [w for w in wanted if w in self._outputs]
        values = self.session.run(wanted, feed)
        return self._split(dict(zip(wanted, values)))
