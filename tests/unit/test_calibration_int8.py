"""INT8 calibration pieces: the footage reader carries the state like the runtime, profiles, exclusions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from vadedge.bundle import GraphSpec, TensorSpec  # noqa: E402
from vadedge.calibration.footage import open_normal_footage  # noqa: E402
from vadedge.calibration.int8 import ClipFeeds, Int8Options, _convs_feeding, check_memory_nodes_float  # noqa: E402
from vadedge.errors import ConfigError, DataError  # noqa: E402
from vadedge.export.functions import DOMAIN  # noqa: E402
from vadedge.preprocess import InputSpec  # noqa: E402

H = W = 8
CLIP = 2
SPEC = InputSpec(H, W, "gray", 1)


def _counter_graph(path, batch=1):
    """frames [B,2,8,8,1] + counter_in [B,1] → psnr = mean pixel, counter_out = counter_in + 1."""
    nodes = [
        helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["psnr"], keepdims=0),
        helper.make_node("Add", ["counter_in", "one"], ["counter_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "counter",
        [
            helper.make_tensor_value_info("frames", TensorProto.UINT8, [batch, CLIP, H, W, 1]),
            helper.make_tensor_value_info("counter_in", TensorProto.FLOAT, [batch, 1]),
        ],
        [
            helper.make_tensor_value_info("psnr", TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info("counter_out", TensorProto.FLOAT, [batch, 1]),
        ],
        [
            helper.make_tensor("axes", TensorProto.INT64, [4], [1, 2, 3, 4]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return GraphSpec(
        batch=batch,
        frames_input="frames",
        scores={"psnr": "psnr"},
        state=(TensorSpec("counter", "counter_in", "counter_out", (1,)),),
    )


@pytest.fixture
def footage(tmp_path):
    root = tmp_path / "normal"
    rng = np.random.default_rng(0)
    for name, n in (("a", 6), ("b", 4)):
        (root / name).mkdir(parents=True)
        for t in range(n):
            cv2.imwrite(str(root / name / f"{t:03d}.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    return root


def test_reader_carries_the_state_per_video(tmp_path, footage):
    graph = _counter_graph(tmp_path / "m.onnx")
    reader = ClipFeeds(tmp_path / "m.onnx", graph, SPEC, CLIP, {"counter": np.zeros(1, np.float32)}, footage)
    feeds = list(reader)
    assert reader.total_clips == 5 + 3 and len(feeds) == 8 and reader.clips_used == 8
    # the state each clip sees is the one the runtime would have: 0, 1, 2… restarting with each video
    assert [float(f["counter_in"][0, 0]) for f in feeds] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert feeds[0]["frames"].shape == (1, CLIP, H, W, 1) and feeds[0]["frames"].dtype == np.uint8
    reader.rewind()
    assert reader.get_next() is not None


def test_reader_subsamples_and_fills_a_static_batch(tmp_path, footage):
    graph = _counter_graph(tmp_path / "m2.onnx", batch=2)
    reader = ClipFeeds(
        tmp_path / "m2.onnx", graph, SPEC, CLIP, {"counter": np.zeros(1, np.float32)}, footage, max_clips=3
    )
    feeds = list(reader)
    assert reader.stride == 3
    # global clip indices 0, 3 (video a) and 6 (= clip 1 of video b) → batches of 2, the last padded
    assert [f["counter_in"][:, 0].tolist() for f in feeds] == [[0.0, 3.0], [1.0, 1.0]]
    assert all(f["frames"].shape[0] == 2 for f in feeds)


def test_footage_layouts_and_errors(tmp_path, footage):
    assert [v.name for v in open_normal_footage(footage).videos] == ["a", "b"]
    assert len(open_normal_footage(footage / "a").videos) == 1  # a single frames folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        open_normal_footage(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        open_normal_footage(tmp_path / "missing")
    graph = _counter_graph(tmp_path / "m3.onnx")
    with pytest.raises(DataError, match="frames one clip needs"):
        ClipFeeds(tmp_path / "m3.onnx", graph, SPEC, 50, {"counter": np.zeros(1, np.float32)}, footage)


def test_profiles():
    cpu, trt = Int8Options.for_target("cpu"), Int8Options.for_target("trt", max_clips=8)
    assert not cpu.symmetric_activations and "MaxPool" in cpu.op_types
    assert trt.symmetric_activations and trt.op_types == ("Conv", "ConvTranspose") and trt.max_clips == 8
    assert cpu.float_memory_inputs and trt.float_memory_inputs
    with pytest.raises(ConfigError):
        Int8Options.for_target("gpu")


def _memory_graph(quantised_input: bool):
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["enc"], name="enc_conv"),
        helper.make_node("Relu", ["enc"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["q"], name="reshape"),
    ]
    feed = "q"
    if quantised_input:
        nodes += [
            helper.make_node("QuantizeLinear", ["q", "s"], ["q8"], name="quant"),
            helper.make_node("DequantizeLinear", ["q8", "s"], ["qd"], name="dequant"),
        ]
        feed = "q8"
    nodes.append(helper.make_node("MemoryRead", [feed, "m"], ["query", "read"], domain=DOMAIN, name="read"))
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2]),
            helper.make_tensor_value_info("m", TensorProto.FLOAT, [1, 3, 2]),
        ],
        [helper.make_tensor_value_info("read", TensorProto.FLOAT, [1, 4, 2])],
        [
            w,
            numpy_helper.from_array(np.array([1, 4, 2], np.int64), "shape"),
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(DOMAIN, 1)])


def test_memory_input_convolutions_found_and_quantised_memory_inputs_rejected():
    model = _memory_graph(False)
    assert _convs_feeding(model.graph, lambda n: n.domain == DOMAIN) == ["enc_conv"]
    check_memory_nodes_float(model)
    with pytest.raises(AssertionError, match="quantised"):
        check_memory_nodes_float(_memory_graph(True))
