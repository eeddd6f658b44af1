"""DeepStream: the generated nvinfer / nvdspreprocess configs (text checked key by key) and the
single-input ONNX variant they need (checked in ONNX Runtime against the bundle's own graph)."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from tests.fakes.tensorrt import FakeTensor, FakeTensorRT  # noqa: E402
from vadedge.bundle import save_bundle  # noqa: E402
from vadedge.errors import ConfigError  # noqa: E402
from vadedge.export.deepstream import (  # noqa: E402
    DS_INPUT,
    SEQUENCE_LIBRARY,
    parse_config,
    write_deepstream_configs,
    write_deepstream_onnx,
)
from vadedge.export.tensorrt import build_engine  # noqa: E402

H = W = 16
T, CLIP, M, D = 2, 3, 4, 8


def _bundle(tmp_path, color="gray", batch=1):
    """A tiny stand-in bundle: psnr-like score from uint8 frames, memory_out = memory_in * 2 + mean(frames)."""
    c = 1 if color == "gray" else 3
    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8, [batch, CLIP, H, W, c])
    mem_in = helper.make_tensor_value_info("memory_in", TensorProto.FLOAT, [batch, M, D])
    f32 = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["xm"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Slice", ["x", "s0", "s1", "ax1"], ["first"]),
        helper.make_node("ReduceMax", ["first"], ["psnr"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("ReduceMean", ["memory_in"], ["msum"], axes=[1, 2], keepdims=0),
        helper.make_node("Add", ["msum", "xm"], ["feature_distance"]),
        helper.make_node("Mul", ["memory_in", "two"], ["m2"]),
        helper.make_node("Reshape", ["xm", "shape_b11"], ["xm3"]),
        helper.make_node("Add", ["m2", "xm3"], ["memory_out"]),
    ]
    inits = [
        helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ax1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        helper.make_tensor("shape_b11", TensorProto.INT64, [3], [-1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [frames, mem_in],
        [f32("psnr", [batch]), f32("feature_distance", [batch]), f32("memory_out", [batch, M, D])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    root = tmp_path / "bundle"
    root.mkdir()
    onnx.save(model, root / "model.onnx")
    manifest = {
        "schema_version": 1,
        "family": "mnad-pred",
        "preset": "edge-xs",
        "input": {"height": H, "width": W, "color": color, "frames": T, "clip_length": CLIP},
        "graph": {
            "batch": batch,
            "frames_input": "frames",
            "state": [
                {"name": "memory", "input": "memory_in", "output": "memory_out", "shape": [M, D], "dtype": "float32"}
            ],
            "params": [],
            "scores": {"psnr": "psnr", "feature_distance": "feature_distance"},
            "extra_outputs": {},
        },
        "models": {"fp32": "model.onnx"},
        "state_file": "state.npz",
        "score": {"signs": {"psnr": -1, "feature_distance": 1}, "weights": {"psnr": 0.6, "feature_distance": 0.4}},
        "provenance": {"vadedge_version": "0.1.0"},
    }
    state = {"memory": np.arange(M * D, dtype=np.float32).reshape(M, D) / 10}
    save_bundle(root, manifest, state)
    return root, state


def test_deepstream_onnx_matches_the_bundle_graph(tmp_path):
    root, state = _bundle(tmp_path, batch=2)
    out = write_deepstream_onnx(root, tmp_path / "ds" / "model.deepstream.onnx")
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == [DS_INPUT]
    assert [o.name for o in model.graph.output] == ["psnr", "feature_distance"]  # state output dropped
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 1, CLIP, H, W]  # NCDHW
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, CLIP, H, W, 1), dtype=np.uint8)
    ref = ort.InferenceSession((root / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    psnr, fd, _ = ref.run(None, {"frames": frames, "memory_in": np.broadcast_to(state["memory"], (2, M, D)).copy()})
    ds = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    ncdhw = frames.astype(np.float32).transpose(0, 4, 1, 2, 3)  # what nvdspreprocess emits
    psnr_ds, fd_ds = ds.run(None, {DS_INPUT: ncdhw})
    np.testing.assert_allclose(psnr_ds, psnr)
    np.testing.assert_allclose(fd_ds, fd, rtol=1e-6)


def _ds_engine(tmp_path, onnx_path, batch=4, precision="fp32"):
    trt = FakeTensorRT(
        "10.3.0",
        inputs=[FakeTensor(DS_INPUT, (batch, 1, CLIP, H, W))],
        outputs=[FakeTensor("psnr", (batch,)), FakeTensor("feature_distance", (batch,))],
    )
    engine = tmp_path / "engines" / "orin.fp16.engine"
    build_engine(onnx_path, engine, precision=precision, trt=trt, device_info={"name": "Orin"})
    return engine


def test_configs_text(tmp_path):
    root, _ = _bundle(tmp_path)
    onnx_ds = write_deepstream_onnx(root, tmp_path / "model.deepstream.onnx")
    engine = _ds_engine(tmp_path, onnx_ds, precision="fp16")
    plugin = tmp_path / "plugins" / "libvadedge_plugins.so"
    infer_path, pre_path = write_deepstream_configs(root, engine, tmp_path / "ds", plugin_library=plugin)
    infer = parse_config(infer_path)["property"]
    assert infer["network-type"] == "100" and infer["output-tensor-meta"] == "1"
    assert infer["input-tensor-from-meta"] == "1" and infer["batch-size"] == "4"
    assert infer["model-engine-file"] == "../engines/orin.fp16.engine"  # relative to the config
    assert infer["custom-lib-path"] == "../plugins/libvadedge_plugins.so"
    assert infer["output-blob-names"] == "psnr;feature_distance"
    assert infer["network-mode"] == "2" and infer["gie-unique-id"] == "1"
    cfg = parse_config(pre_path)
    pre = cfg["property"]
    assert pre["network-input-order"] == "2"
    assert pre["network-input-shape"] == f"4;1;{CLIP};{H};{W}"
    assert pre["tensor-name"] == DS_INPUT and pre["tensor-data-type"] == "0"
    assert pre["network-color-format"] == "2"  # gray
    assert pre["target-unique-ids"] == infer["gie-unique-id"]
    assert pre["custom-lib-path"] == SEQUENCE_LIBRARY
    assert pre["custom-tensor-preparation-function"] == "CustomSequenceTensorPreparation"
    assert cfg["user-configs"] == {
        "channel-scale-factors": "1.0",
        "channel-mean-offsets": "0.0",
        "stride": "1",
        "subsample": "0",
    }
    assert cfg["group-0"]["src-ids"] == "-1"


def test_rgb_bundle_without_sidecar(tmp_path):
    root, _ = _bundle(tmp_path, color="rgb")
    with pytest.warns(UserWarning, match="does not exist yet"):
        _, pre_path = write_deepstream_configs(root, tmp_path / "later.engine", tmp_path / "ds", batch_size=2)
    cfg = parse_config(pre_path)
    assert cfg["property"]["network-color-format"] == "0"
    assert cfg["property"]["network-input-shape"] == f"2;3;{CLIP};{H};{W}"
    assert cfg["user-configs"]["channel-scale-factors"] == "1.0;1.0;1.0"
    assert "custom-lib-path" not in parse_config(tmp_path / "ds" / "config_infer_vadedge.txt")["property"]


def test_engine_with_state_inputs_is_rejected(tmp_path):
    root, _ = _bundle(tmp_path)
    engine = tmp_path / "model.engine"
    build_engine(root / "model.onnx", engine, precision="fp32", trt=FakeTensorRT("10.3.0"), device_info={"name": "x"})
    with pytest.raises(ConfigError, match="write_deepstream_onnx"):
        write_deepstream_configs(root, engine, tmp_path / "ds")
    assert json.loads((tmp_path / "model.engine.json").read_text())["inputs"][1]["name"] == "memory_in"


def test_deepstream_onnx_with_plugins(tmp_path):
    """A bundle graph with a vadedge memory node: the DeepStream variant can carry the plugin node."""
    root, _ = _bundle(tmp_path)
    model = onnx.load(root / "model.onnx")
    read = helper.make_node("MemoryRead", ["memory_in", "memory_in"], ["q", "r"], domain="vadedge", name="mr")
    model.graph.node.append(read)
    model.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, M, D]))
    fn = helper.make_function(
        "vadedge",
        "MemoryRead",
        ["features", "memory"],
        ["query", "read"],
        [helper.make_node("Identity", ["features"], ["query"]), helper.make_node("Identity", ["memory"], ["read"])],
        [helper.make_opsetid("", 17)],
    )
    model.functions.append(fn)
    model.opset_import.append(helper.make_opsetid("vadedge", 1))
    onnx.save(model, root / "model.onnx")
    out = onnx.load(write_deepstream_onnx(root, tmp_path / "ds.onnx", plugins=True))
    assert [n.op_type for n in out.graph.node if n.domain == "vadedge"] == ["VadMemoryRead"]
    assert [i.name for i in out.graph.input] == [DS_INPUT]
