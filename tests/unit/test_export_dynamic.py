"""Dynamic-batch export of every registered family, and MPN's `vadedge::PrototypeFormation` node.

Each family (tiny edge-xs at 32x32) is exported once with `batch="dynamic"`; ONNX Runtime must match
the PyTorch stream step (same inputs) to 1e-4 relative at batch 1 and batch 3. MPN is the family whose
extra inputs are all unbatched parameters (`params.*`), the case that used to fail inside torch.export
("inputs[1] is a tuple but dynamic_shapes[1] is a list"); its graph must carry PrototypeFormation +
MemoryRead nodes, which the FP16 pass keeps in FP32, INT8 leaves unquantised and `--plugins` turns into
VadPrototypeFormation + VadMemoryRead.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from vadedge.export.functions import DOMAIN  # noqa: E402
from vadedge.export.onnx_export import batch_dynamic_shapes, export_onnx  # noqa: E402
from vadedge.export.torch_graph import StreamStepGraph, adaptable_params, example_inputs, side_input_specs  # noqa: E402
from vadedge.train import create_model, list_models  # noqa: E402

SIZE = 32
RTOL = 1e-4


class Dynamic:
    """One family exported with a dynamic batch, plus its eager reference."""

    def __init__(self, name: str, root) -> None:
        torch.manual_seed(0)
        self.model = create_model(name, "edge-xs", height=SIZE, width=SIZE).eval()
        self.state = {k: v.clone() for k, v in self.model.initial_state().items()}
        self.path = root / f"{name}.dynamic.onnx"
        self.info = export_onnx(self.model, self.state, self.path, batch="dynamic")
        self.proto = onnx.load(str(self.path))
        self.side = list(side_input_specs(self.model))
        self.theta = adaptable_params(self.model)
        self.ref = StreamStepGraph(
            self.model,
            sorted(self.state),
            list(self.model.score_components),
            side_names=self.side,
            param_names=list(self.theta),
        ).eval()

    def inputs(self, batch: int) -> tuple:
        return example_inputs(
            self.model, {k: self.state[k] for k in sorted(self.state)}, batch, side=self.side, params=self.theta
        )

    def run_onnx(self, path, args: tuple) -> dict:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = dict(zip(self.ref.input_names(), (a.numpy() for a in args)))
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(None, feeds)))

    def run_torch(self, args: tuple) -> dict:
        with torch.no_grad():
            return {k: v.numpy() for k, v in zip(self.ref.output_names(), self.ref(*args))}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("dynamic")
    cache: dict[str, Dynamic] = {}

    def get(name: str) -> Dynamic:
        if name not in cache:
            cache[name] = Dynamic(name, root)
        return cache[name]

    return get


def test_static_inputs_get_empty_axes_never_a_tuple_of_nones():
    frames, rest = batch_dynamic_shapes(3, 1)
    assert set(frames) == {0} and set(rest[0]) == {0} and rest[1:] == ({}, {})
    assert batch_dynamic_shapes(2, 0)[1] == ({}, {})  # MPN: every extra input is a parameter
    assert len(batch_dynamic_shapes(0, 0)) == 1  # frames only


@pytest.mark.parametrize("name", list_models())
def test_every_family_exports_with_a_dynamic_batch(exported, name):
    e = exported(name)
    assert e.info.batch == "dynamic"
    frames = e.proto.graph.input[0]
    assert frames.name == "frames" and frames.type.tensor_type.shape.dim[0].dim_param
    for batch in (1, 3):
        args = e.inputs(batch)
        got, want = e.run_onnx(e.path, args), e.run_torch(args)
        for score in e.model.score_components:
            assert got[score].shape == (batch,)
            np.testing.assert_allclose(got[score], want[score], rtol=RTOL, atol=1e-7, err_msg=f"{name} {score}")
        for k in sorted(e.state):
            np.testing.assert_allclose(got[f"{k}_out"], want[f"{k}_out"], rtol=RTOL, atol=1e-6)


# ---- MPN: the PrototypeFormation node through every graph pass ---------------------------------------
def _vadedge_nodes(model) -> list:
    return [n for n in model.graph.node if n.domain == DOMAIN]


def test_mpn_graph_has_prototype_formation_fed_by_the_parameter_input(exported):
    e = exported("mpn")
    ops = sorted(n.op_type for n in _vadedge_nodes(e.proto))
    assert ops == ["MemoryRead", "PrototypeFormation"]
    assert {f.name for f in e.proto.functions if f.domain == DOMAIN} == {"MemoryRead", "PrototypeFormation"}
    node = next(n for n in e.proto.graph.node if n.op_type == "PrototypeFormation")
    graph_inputs = {i.name for i in e.proto.graph.input}
    assert node.input[1] == "params.dpu.weight" and node.input[1] in graph_inputs
    # the prototypes feed the memory read (the retrieval of the DPU)
    read = next(n for n in e.proto.graph.node if n.op_type == "MemoryRead")
    assert read.input[1] == node.output[0]


def test_mpn_plugins_pass(exported):
    from vadedge.export.plugins import PLUGIN_NAMESPACE, plugin_nodes, replace_with_plugins

    out = replace_with_plugins(exported("mpn").proto)
    assert sorted(n.op_type for n in plugin_nodes(out)) == ["VadMemoryRead", "VadPrototypeFormation"]
    assert all(n.domain == DOMAIN for n in plugin_nodes(out))
    for n in plugin_nodes(out):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode() and attrs["plugin_version"] == b"1"
    assert not [f for f in out.functions if f.domain == DOMAIN]  # no body left to inline
    onnx.checker.check_model(out)


def test_mpn_fp16_keeps_prototype_formation_in_fp32(exported, tmp_path):
    from vadedge.export.fp16 import FLOAT, convert_to_fp16

    e = exported("mpn")
    m16 = convert_to_fp16(e.proto)
    inferred = onnx.shape_inference.infer_shapes(m16)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    }
    for node in _vadedge_nodes(m16):  # softmax over N and the L2 norms run in the FP32 function body
        assert all(types[x] == FLOAT for x in list(node.input) + list(node.output)), node.op_type
    onnx.save(m16, str(tmp_path / "m16.onnx"))
    args = e.inputs(3)
    got, want = e.run_onnx(tmp_path / "m16.onnx", args), e.run_onnx(e.path, args)
    np.testing.assert_allclose(got["psnr"], want["psnr"], rtol=1e-2)


class _Reader:
    """A minimal CalibrationDataReader over a few random clips."""

    def __init__(self, feeds: list[dict]) -> None:
        self.feeds, self.i, self.clips_used = feeds, 0, 0

    def get_next(self):
        if self.i >= len(self.feeds):
            return None
        self.i += 1
        self.clips_used += 1
        return self.feeds[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def test_mpn_int8_leaves_the_vadedge_nodes_in_float(exported, tmp_path):
    from vadedge.calibration.int8 import Int8Options, quantize_int8

    e = exported("mpn")
    names = e.ref.input_names()
    g = torch.Generator().manual_seed(3)
    feeds = []
    for _ in range(3):
        frames = torch.randint(0, 256, e.inputs(1)[0].shape, dtype=torch.uint8, generator=g)
        args = (frames,) + e.inputs(1)[1:]
        feeds.append(dict(zip(names, (a.numpy() for a in args))))
    out = tmp_path / "m8.onnx"
    report = quantize_int8(e.path, out, _Reader(feeds), options=Int8Options.for_target("trt"))
    assert report.quantized_nodes > 0
    assert report.float_nodes_kept == ["MemoryRead", "PrototypeFormation"]
    q = onnx.load(str(out))  # quantize_int8 already checked: no vadedge node reads a QuantizeLinear output
    assert sorted(n.op_type for n in _vadedge_nodes(q)) == ["MemoryRead", "PrototypeFormation"]
    got = e.run_onnx(out, e.inputs(3))
    assert np.isfinite(got["psnr"]).all() and got["psnr"].shape == (3,)
