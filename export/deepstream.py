"""DeepStream integration: an nvinfer config, an nvdspreprocess (temporal sequence) config, and the
single-input ONNX variant that DeepStream's nvinfer can feed.

How the pieces fit (facts from NVIDIA's DeepStream docs, cited in docs/tensorrt.md):
* `nvdspreprocess` with the custom sequence library (`libnvds_custom_sequence_preprocess.so`, the
  3D action-recognition sample) keeps the last T frames of every stream and emits one float tensor
  per stream in NCDHW layout (`network-input-order=2`, 5-D `network-input-shape`), attached as meta.
* `nvinfer` with `input-tensor-from-meta=1` feeds that tensor to the engine unchanged; with
  `network-type=100` and `output-tensor-meta=1` it attaches the raw outputs (the score components,
  optional error map) as NvDsInferTensorMeta for an application probe to read.
* nvinfer feeds exactly one input tensor. vadedge graphs also take the per-stream state (MNAD's
  memory), so `write_deepstream_onnx` makes a DeepStream variant: input `frames_ncdhw` float32
  [B, C, T, H, W] holding raw 0..255 pixel values (scale 1, offset 0 in the preprocess config; the
  graph normalises inside, as always), and the state inputs replaced by the bundle's calibrated state
  as constants. Under nvinfer the memory is therefore FROZEN (no test-time write); use vadedge's own
  runtime, or Triton sequence batching with implicit state, where the gated update matters.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vadedge._optional import require
from vadedge.bundle import Bundle, load_bundle
from vadedge.errors import ConfigError

DS_INPUT = "frames_ncdhw"
SEQUENCE_LIBRARY = "/opt/nvidia/deepstream/deepstream/lib/libnvds_custom_sequence_preprocess.so"
SEQUENCE_FUNCTION = "CustomSequenceTensorPreparation"
_COLOR_FORMAT = {"rgb": 0, "bgr": 1, "gray": 2}  # nvdspreprocess network-color-format
_NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer network-mode


def write_deepstream_onnx(
    bundle_dir: str | Path, out_path: str | Path, *, precision: str = "fp32", plugins: bool = False
) -> Path:
    """Write the single-input DeepStream variant of a bundle's model (see the module docstring).

    `plugins=True` also swaps the vadedge nodes for the TensorRT plugin nodes (`replace_with_plugins`);
    nvinfer then needs `custom-lib-path` = libvadedge_plugins.so (write_deepstream_configs(plugin_library=)).
    """
    onnx = require("onnx")
    from onnx import TensorProto, helper, numpy_helper

    bundle = load_bundle(bundle_dir)
    model = onnx.load(str(bundle.model_file(precision)))
    graph = model.graph
    spec, man = bundle.input_spec, bundle.manifest
    frames_name = man.graph.frames_input
    frames = next((i for i in graph.input if i.name == frames_name), None)
    if frames is None:
        raise ConfigError(f"{bundle.model_file(precision).name} has no input named {frames_name!r}")
    dims = frames.type.tensor_type.shape.dim
    batch = dims[0].dim_value if dims and dims[0].dim_value > 0 else (dims[0].dim_param if dims else "B") or "B"
    c, t, h, w = spec.channels, bundle.clip_length, spec.height, spec.width
    new_input = helper.make_tensor_value_info(DS_INPUT, TensorProto.FLOAT, [batch, c, t, h, w])
    transposed = f"{DS_INPUT}_nthwc"
    nodes = [helper.make_node("Transpose", [DS_INPUT], [transposed], perm=[0, 2, 3, 4, 1], name="ds_to_nthwc")]
    needs_u8 = False
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name != frames_name:
                continue
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if node.op_type == "Cast" and to in (TensorProto.FLOAT, TensorProto.FLOAT16):
                node.input[i] = transposed  # the graph's own uint8 -> float cast now casts float
            else:
                node.input[i] = f"{DS_INPUT}_u8"
                needs_u8 = True
    if needs_u8:
        warnings.warn(
            "the frames input feeds a node other than a float Cast; a Cast to uint8 was inserted "
            "(TensorRT supports uint8 only at network I/O, so this variant may not build)",
            stacklevel=2,
        )
        nodes.append(helper.make_node("Cast", [transposed], [f"{DS_INPUT}_u8"], to=TensorProto.UINT8))
    # state inputs -> the bundle's initial state, expanded to the batch of frames_ncdhw
    state_items = list(man.graph.state) + list(man.graph.params)
    if state_items:
        nodes += [helper.make_node("Shape", [DS_INPUT], ["ds_batch"], start=0, end=1, name="ds_batch")]
    inits = []
    for item in state_items:
        value = np.asarray(bundle.state[item.name], dtype=item.dtype)[None]
        init = numpy_helper.from_array(value, f"{item.input}_frozen")
        shape = numpy_helper.from_array(np.asarray(item.shape, np.int64), f"{item.input}_item_shape")
        inits += [init, shape]
        nodes += [
            helper.make_node("Concat", ["ds_batch", shape.name], [f"{item.input}_shape"], axis=0),
            helper.make_node(
                "Expand", [init.name, f"{item.input}_shape"], [item.input], name=f"{item.input}_frozen_expand"
            ),
        ]
    drop_in = {frames_name} | {i.input for i in state_items}
    drop_out = {i.output for i in state_items}
    kept_inputs = [i for i in graph.input if i.name not in drop_in]
    kept_outputs = [o for o in graph.output if o.name not in drop_out]
    del graph.input[:]
    graph.input.extend([new_input, *kept_inputs])
    del graph.output[:]
    graph.output.extend(kept_outputs)
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body)
    graph.initializer.extend(inits)
    helper.set_model_props(
        model,
        {
            **{p.key: p.value for p in model.metadata_props},
            "vadedge.deepstream": f"{DS_INPUT} float32 NCDHW raw 0..255 pixels; state frozen at the bundle's state.npz",
        },
    )
    onnx.checker.check_model(model)
    if plugins:
        from vadedge.export.plugins import replace_with_plugins

        model = replace_with_plugins(model)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def _rel(path: Path, start: Path) -> str:
    """Path as written in a DeepStream config: relative to the config file's folder when possible."""
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # different drives
        return str(path.resolve())


def _engine_io(engine_file: Path) -> Optional[dict]:
    from vadedge.runtime.engine import EngineError, load_sidecar

    try:
        return load_sidecar(engine_file)
    except EngineError:
        return None


def write_deepstream_configs(
    bundle_dir: str | Path,
    engine_file: str | Path,
    out_dir: str | Path,
    *,
    plugin_library: str | Path | None = None,
    batch_size: Optional[int] = None,
    gpu_id: int = 0,
    unique_id: int = 1,
    preprocess_unique_id: int = 5,
    sequence_library: str = SEQUENCE_LIBRARY,
) -> list[Path]:
    """Write `config_infer_vadedge.txt` (nvinfer) and `config_preprocess_vadedge.txt` (nvdspreprocess).

    `engine_file` should be built from `write_deepstream_onnx(...)` (single input `frames_ncdhw`);
    with a sidecar next to it, its inputs, batch and precision are checked and used. `plugin_library`
    (libvadedge_plugins.so) becomes nvinfer's `custom-lib-path` for engines built with --plugins.
    Returns the two paths.
    """
    bundle = load_bundle(bundle_dir, check_files=False)
    engine = Path(engine_file)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    precision, batch_size = _engine_settings(engine, batch_size, bundle.manifest.graph.batch)
    infer = _infer_config(
        bundle,
        Path(bundle_dir).name,
        _rel(engine, out),
        precision,
        batch_size,
        gpu_id,
        unique_id,
        _rel(Path(plugin_library), out) if plugin_library is not None else None,
    )
    pre = _preprocess_config(bundle, batch_size, gpu_id, unique_id, preprocess_unique_id, sequence_library)
    infer_path, pre_path = out / "config_infer_vadedge.txt", out / "config_preprocess_vadedge.txt"
    infer_path.write_text("\n".join(infer) + "\n")
    pre_path.write_text("\n".join(pre) + "\n")
    return [infer_path, pre_path]


def _engine_settings(engine: Path, batch_size: Optional[int], graph_batch: Any) -> tuple[str, int]:
    """(precision, batch size) for the configs: from the engine's sidecar when there is one (its input
    must be the single DeepStream tensor), else FP32 and the bundle graph's fixed batch (or 1)."""
    side = _engine_io(engine)
    precision = "fp32"
    if side is not None:
        names = [t["name"] for t in side["inputs"]]
        if names != [DS_INPUT]:
            raise ConfigError(
                f"{engine.name} has inputs {names}; nvinfer feeds one tensor - build the engine from "
                f"write_deepstream_onnx(bundle, ...) (input {DS_INPUT!r}, state frozen)"
            )
        precision = side.get("precision", "fp32")
        if batch_size is None and isinstance(side.get("batch"), int):
            batch_size = side["batch"]
        if batch_size is None and side.get("batch_profile"):
            batch_size = side["batch_profile"][2]
    elif not engine.is_file():
        # stacklevel 3: the warning points at the caller of write_deepstream_configs
        warnings.warn(f"engine {engine} does not exist yet; the configs refer to it anyway", stacklevel=3)
    if batch_size is None:
        batch_size = graph_batch if isinstance(graph_batch, int) else 1
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    return precision, batch_size


def _infer_config(
    bundle: Bundle,
    bundle_name: str,
    engine_rel: str,
    precision: str,
    batch_size: int,
    gpu_id: int,
    unique_id: int,
    plugin_rel: Optional[str],
) -> list[str]:
    """Lines of config_infer_vadedge.txt (Gst-nvinfer: tensor from meta in, raw tensor meta out)."""
    man = bundle.manifest
    outputs = list(man.graph.scores.values()) + list(man.graph.extra_outputs.values())
    infer = [
        f"# Gst-nvinfer config for the vadedge {man.family} bundle {bundle_name} (generated by vadedge).",
        "# Input: the NCDHW tensor attached by nvdspreprocess (config_preprocess_vadedge.txt).",
        "# Output: raw tensors as NvDsInferTensorMeta (frame user meta) - read them in a pad probe.",
        "[property]",
        f"gpu-id={gpu_id}",
        f"gie-unique-id={unique_id}",
        f"model-engine-file={engine_rel}",
        f"batch-size={batch_size}",
        f"# 0=FP32 1=INT8 2=FP16; informational - the engine already fixes its precision ({precision})",
        f"network-mode={_NETWORK_MODE.get(precision, 0)}",
        "# 100 = other: no detector/classifier post-processing",
        "network-type=100",
        "output-tensor-meta=1",
        "# take the preprocessed tensor from nvdspreprocess instead of scaling frames itself",
        "input-tensor-from-meta=1",
        "process-mode=1",
        f"output-blob-names={';'.join(outputs)}",
    ]
    if plugin_rel is not None:
        infer += [
            "# registers the VadMemoryRead / VadMemoryUpdate TensorRT plugins when loaded",
            f"custom-lib-path={plugin_rel}",
        ]
    return infer


def _preprocess_config(
    bundle: Bundle, batch_size: int, gpu_id: int, unique_id: int, preprocess_unique_id: int, sequence_library: str
) -> list[str]:
    """Lines of config_preprocess_vadedge.txt (Gst-nvdspreprocess: last T frames per stream, NCDHW, raw pixels)."""
    spec = bundle.input_spec
    c, t = spec.channels, bundle.clip_length
    return [
        f"# Gst-nvdspreprocess config for the vadedge {bundle.manifest.family} bundle: a sliding window of the "
        f"last {t} frames",
        "# per stream, raw pixel values (the model normalises inside), NCDHW float32.",
        "[property]",
        "enable=1",
        f"unique-id={preprocess_unique_id}",
        "# the nvinfer instance (gie-unique-id) that consumes the tensor",
        f"target-unique-ids={unique_id}",
        f"gpu-id={gpu_id}",
        "process-on-frame=1",
        "# 2 = custom order; 5-D shape = batch;channels;frames;height;width",
        "network-input-order=2",
        f"network-input-shape={batch_size};{c};{t};{spec.height};{spec.width}",
        "# 0=RGB 1=BGR 2=GRAY",
        f"network-color-format={_COLOR_FORMAT[spec.color]}",
        "# 0 = FP32",
        "tensor-data-type=0",
        f"tensor-name={DS_INPUT}",
        f"processing-width={spec.width}",
        f"processing-height={spec.height}",
        "maintain-aspect-ratio=0",
        "scaling-pool-memory-type=0",
        "scaling-pool-compute-hw=0",
        "# 1 = bilinear",
        "scaling-filter=1",
        "tensor-buf-pool-size=8",
        f"custom-lib-path={sequence_library}",
        f"custom-tensor-preparation-function={SEQUENCE_FUNCTION}",
        "",
        "[user-configs]",
        "# scale 1 and offset 0: the tensor holds raw 0..255 values, exactly what the vadedge graph expects",
        f"channel-scale-factors={';'.join(['1.0'] * c)}",
        f"channel-mean-offsets={';'.join(['0.0'] * c)}",
        "# advance one frame per inference: every new frame is scored against the previous ones",
        "stride=1",
        "subsample=0",
        "",
        "[group-0]",
        "src-ids=-1",
        "process-on-roi=0",
    ]


def parse_config(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a DeepStream key-file config into {group: {key: value}} (comments dropped); for tests/tools."""
    groups: dict[str, dict[str, str]] = {}
    current: Any = None
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], {})
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return groups
