"""Write a Triton model repository for a bundle (`vadedge triton-repo`, docs/deployment.md).

    REPO/<name>/config.pbtxt         Python backend + sequence batcher (START/END/CORRID controls)
    REPO/<name>/1/model.py           re-exports vadedge.serving.triton_backend.TritonPythonModel
    REPO/<name>/1/bundle/            the bundle, copied
    REPO/<name>_onnx/, <name>_trt/   (gpu=True) ONNX Runtime / TensorRT backends with implicit state

The Python-backend model runs on the CPU server bundled in nvidia-pytriton (tested). The GPU
variants carry the graph's state tensors as Triton implicit sequence state (`<state>_in` fed from
the previous request's `<state>_out`, initialised from the bundle's state.npz); they return the
graph's raw components only (no smoothing / events: the client-side scorer is not wired to them)
and are checked against Triton's model-config schema but not run here (no GPU).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..bundle import Bundle, load_bundle
from ..errors import ConfigError

logger = logging.getLogger(__name__)

MODEL_PY = '''"""Triton Python-backend model written by `vadedge triton-repo`: vadedge's runtime core.

The backend's stub embeds its own libpython and ignores PYTHONPATH; its entries are added here so
a server can use vadedge from a virtual environment (in a container, pip-install vadedge instead).
"""
import os
import sys

for _p in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if _p and _p not in sys.path:
        sys.path.insert(0, _p)

from vadedge.serving.triton_backend import TritonPythonModel  # noqa: E402,F401
'''

_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}


@dataclass(frozen=True)
class RepoOptions:
    """What the repository's models look like (see docs/deployment.md for sizing)."""

    name: str = "vadedge"
    max_batch_size: int = 16  # requests (cameras) per model call
    dynamic_batching: bool = True  # oldest-first batching across sequences; False = direct slots
    max_queue_delay_us: int = 2000  # how long a partial batch waits for more cameras
    # cameras served at once: the oldest strategy's candidate sequences (a sequence beyond it waits
    # until another ends or idles out); the direct strategy serves only max_batch_size per instance
    max_sequences: int = 64
    idle_us: int = 10_000_000  # a sequence silent this long is dropped (state freed)
    threads: int = 0  # ORT intra-op threads in the Python model (0 = ORT default)
    device: str = "cpu"  # Python model: "cpu", "cuda:0", "tensorrt:0" or "auto" (from instance kind)
    instance_kind: str = "KIND_CPU"
    instances: int = 1  # model instances (Python backend: processes); a sequence stays on one of them
    gpu: bool = False  # also write the ONNX Runtime and TensorRT backend variants


def _sequence_block(opts: RepoOptions, state: str = "") -> str:
    if opts.dynamic_batching:
        strategy = (
            f"  oldest {{\n    max_candidate_sequences: {opts.max_sequences}\n"
            f"    preferred_batch_size: [ {opts.max_batch_size} ]\n"
            f"    max_queue_delay_microseconds: {opts.max_queue_delay_us}\n  }}\n"
        )
    else:
        strategy = "  direct { }\n"
    return (
        f"sequence_batching {{\n  max_sequence_idle_microseconds: {opts.idle_us}\n{strategy}"
        "  control_input [\n"
        '    { name: "START" control [ { kind: CONTROL_SEQUENCE_START int32_false_true: [ 0, 1 ] } ] },\n'
        '    { name: "END" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },\n'
        '    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }\n'
        f"  ]\n{state}}}\n"
    )


def client_info(bundle: Bundle) -> dict:
    """What RemoteDetector needs to mirror the local Detector: the score section (threshold for
    drawing, calibration note), the model frame rate and a description."""
    m = bundle.manifest
    spec = bundle.input_spec
    return {
        "score": m.score.to_dict(),
        "frame_rate": m.input.frame_rate,
        "describe": f"{m.family} ({m.preset or 'custom'}) {spec.height}x{spec.width} {spec.color}, "
        f"clip {bundle.clip_length}",
    }


def python_config(bundle: Bundle, opts: RepoOptions) -> str:
    spec = bundle.input_spec
    comps = list(bundle.manifest.graph.scores)
    c = 1 if spec.color == "gray" else 3
    return (
        f'name: "{opts.name}"\nbackend: "python"\nmax_batch_size: {opts.max_batch_size}\n'
        "input [\n"
        f'  {{ name: "FRAME" data_type: TYPE_UINT8 dims: [ {spec.height}, {spec.width}, {c} ] }},\n'
        '  { name: "TIMESTAMP" data_type: TYPE_FP64 dims: [ 1 ] }\n]\n'
        "output [\n"
        '  { name: "SCORE" data_type: TYPE_FP32 dims: [ 1 ] },\n'
        '  { name: "RAW_SCORE" data_type: TYPE_FP32 dims: [ 1 ] },\n'
        f'  {{ name: "COMPONENTS" data_type: TYPE_FP32 dims: [ {len(comps)} ] }},\n'
        '  { name: "FLAGS" data_type: TYPE_INT32 dims: [ 1 ] },\n'
        '  { name: "EVENTS" data_type: TYPE_STRING dims: [ 1 ] }\n]\n'
        + _sequence_block(opts)
        + f"instance_group [ {{ count: {opts.instances} kind: {opts.instance_kind} }} ]\n"
        "parameters [\n"
        '  { key: "bundle" value: { string_value: "bundle" } },\n'
        f'  {{ key: "components" value: {{ string_value: "{",".join(comps)}" }} }},\n'
        f'  {{ key: "vadedge" value: {{ string_value: {json.dumps(json.dumps(client_info(bundle)))} }} }},\n'
        f'  {{ key: "device" value: {{ string_value: "{opts.device}" }} }},\n'
        f'  {{ key: "threads" value: {{ string_value: "{opts.threads}" }} }}\n]\n'
    )


def graph_config(bundle: Bundle, opts: RepoOptions, backend: str) -> str:
    """ONNX Runtime ("onnxruntime") or TensorRT ("tensorrt") backend config with implicit state."""
    m = bundle.manifest
    g = m.graph
    if g.params or g.side_inputs:
        raise ConfigError(
            f"bundle {bundle.path}: graphs with adapted parameters or side inputs need the "
            f"Python-backend model (their inputs are computed per stream on the host)"
        )
    spec = bundle.input_spec
    c = 1 if spec.color == "gray" else 3
    states = []
    for s in g.state:
        dt = _DTYPES.get(s.dtype)
        if dt is None:
            raise ConfigError(f"state {s.name}: dtype {s.dtype} has no Triton type here")
        dims = ", ".join(str(d) for d in s.shape)
        states.append(
            f'    {{ input_name: "{s.input}" output_name: "{s.output}" data_type: {dt} dims: [ {dims} ]\n'
            f'      initial_state: {{ name: "{s.name}" data_type: {dt} dims: [ {dims} ] '
            f'data_file: "{s.name}" }} }}'
        )
    state = "  state [\n" + ",\n".join(states) + "\n  ]\n" if states else ""
    outputs = ",\n".join(
        f'  {{ name: "{t}" data_type: TYPE_FP32 dims: [ 1 ] reshape: {{ shape: [ ] }} }}' for t in g.scores.values()
    )
    name = f"{opts.name}_{'onnx' if backend == 'onnxruntime' else 'trt'}"
    platform = 'platform: "onnxruntime_onnx"' if backend == "onnxruntime" else 'platform: "tensorrt_plan"'
    return (
        f'name: "{name}"\n{platform}\nmax_batch_size: {opts.max_batch_size}\n'
        "input [\n"
        f'  {{ name: "{g.frames_input}" data_type: TYPE_UINT8 '
        f"dims: [ {m.input.clip_length}, {spec.height}, {spec.width}, {c} ] }}\n]\n"
        f"output [\n{outputs}\n]\n" + _sequence_block(opts, state) + "instance_group [ { count: 1 kind: KIND_GPU } ]\n"
    )


def write_model_repository(
    bundle: Union[str, Path, Bundle], out: Union[str, Path], opts: RepoOptions = RepoOptions()
) -> Path:
    """Write (or overwrite the models of) a Triton model repository for `bundle`; returns `out`."""
    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if opts.max_batch_size < 1 or opts.max_sequences < 1:
        raise ConfigError(
            f"max_batch_size and max_sequences must be >= 1, got {opts.max_batch_size}, {opts.max_sequences}"
        )
    gb = b.manifest.graph.static_batch
    if gb is not None and gb != 1 and gb < opts.max_batch_size:
        logger.info("bundle graph batch %d < max_batch_size %d: the model splits batches", gb, opts.max_batch_size)
    out = Path(out)
    model = out / opts.name
    if (model / "1" / "bundle").exists():
        shutil.rmtree(model / "1" / "bundle")
    (model / "1").mkdir(parents=True, exist_ok=True)
    shutil.copytree(b.path, model / "1" / "bundle")
    (model / "1" / "model.py").write_text(MODEL_PY)
    (model / "config.pbtxt").write_text(python_config(b, opts))
    if opts.gpu:
        _write_graph_model(b, out, opts, "onnxruntime")
        _write_graph_model(b, out, opts, "tensorrt")
    logger.info("wrote Triton model repository %s (model %s)", out, opts.name)
    return out


def _write_graph_model(b: Bundle, out: Path, opts: RepoOptions, backend: str) -> None:
    suffix = "onnx" if backend == "onnxruntime" else "trt"
    model = out / f"{opts.name}_{suffix}"
    (model / "1").mkdir(parents=True, exist_ok=True)
    (model / "config.pbtxt").write_text(graph_config(b, opts, backend))
    init = model / "initial_state"
    init.mkdir(exist_ok=True)
    for s in b.manifest.graph.state:  # raw little-endian values, as Triton's data_file expects
        np.ascontiguousarray(b.state[s.name], dtype=np.dtype(s.dtype).newbyteorder("<")).tofile(init / s.name)
    if backend == "onnxruntime":
        shutil.copyfile(b.model_file(b.precision), model / "1" / "model.onnx")
    else:
        engines = b.manifest.engines
        if not engines:
            (model / "1" / "README.txt").write_text(
                "Build model.plan on the GPU host: vadedge export ... --engine tensorrt (or trtexec "
                "--onnx=model.onnx --saveEngine=model.plan) and place it here.\n"
            )
        else:
            src = b.file(engines[0].file, "engine")  # an engine runs only on the GPU it was built for
            if src.is_file():
                shutil.copyfile(src, model / "1" / "model.plan")
