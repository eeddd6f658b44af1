"""Every registered family exports, and ONNX Runtime matches PyTorch — one call and a 100+ frame stream.

The loop covers `vadedge.train.list_models()`, so families added later are tested too: a family whose
export is not supported fails here, loudly. Models are tiny (edge-xs at 32x32) with randomised
BatchNorm statistics (so folding is exercised) and, where the family has a gated write, a gate that
always opens (so the carried state really changes).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from vadedge.export.functions import DOMAIN  # noqa: E402
from vadedge.export.onnx_export import export_onnx  # noqa: E402
from vadedge.export.torch_graph import adaptable_params  # noqa: E402
from vadedge.preprocess import prepare_frame  # noqa: E402
from vadedge.runtime.runner import StreamRunner  # noqa: E402
from vadedge.synthetic import SceneGenerator  # noqa: E402
from vadedge.train import create_model, list_models  # noqa: E402

FAMILIES = list_models()
# architecture options exported like a family of their own: "family+option=value"
VARIANTS = FAMILIES + ["mnad-pred+upsample=resize"]
SIZE = 32
BATCH = 2
RTOL = 1e-4


def tiny_model(name: str):
    torch.manual_seed(0)
    family, _, option = name.partition("+")
    extra = dict([option.split("=")]) if option else {}
    model = create_model(family, "edge-xs", height=SIZE, width=SIZE, **extra)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(m.bias.shape, generator=g) * 0.2 - 0.1)
    if hasattr(model, "update_threshold"):
        model.update_threshold = 1e9  # open the gated memory write on every frame
    return model.eval()


class Exported:
    def __init__(self, name: str, root) -> None:
        self.name = name
        self.model = tiny_model(name)
        self.state = {k: v.clone() for k, v in self.model.initial_state().items()}
        self.path = root / f"{name}.onnx"
        self.info = export_onnx(self.model, self.state, self.path, batch=BATCH)
        self.graph = self.info.graph_spec()
        self.params = {k: v.numpy() for k, v in adaptable_params(self.model).items()}

    def state_np(self) -> dict:
        return {**{k: v.numpy() for k, v in self.state.items()}, **self.params}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            cache[name] = Exported(name, root)
        return cache[name]

    return get


def _frames(spec, n, seed=0):
    gen = SceneGenerator(SIZE, SIZE, seed=seed)
    frames, _ = gen.render(n, seed=seed + 7, anomaly="speed", anomaly_start=n // 2)
    return np.stack([prepare_frame(f, spec) for f in frames])


@pytest.mark.parametrize("name", VARIANTS)
def test_onnx_runtime_matches_torch_on_one_call(name, exported):
    ex = exported(name)
    model = ex.model
    proto = onnx.load(str(ex.path))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input][0] == "frames"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    if not ex.graph.params:  # folded into the convs (MPN keeps BN next to its adaptable parameters)
        assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)
    uses_memory_ops = {n.op_type for n in proto.graph.node if n.domain == DOMAIN}
    if name.startswith("mnad"):
        assert uses_memory_ops == {"MemoryRead", "MemoryUpdate"}

    clips = np.stack([_frames(model.spec, model.clip_length, seed=s) for s in range(BATCH)])
    runner = StreamRunner.for_model(ex.path, ex.graph, model.clip_length, ex.state_np())
    state = runner.batched_state(BATCH)
    for k in state:  # a different state per stream
        state[k][1] = np.roll(state[k][1], 1, axis=0)
    out = runner.step(clips, state, runner.call_params(BATCH))
    scores, new_state, extras = out.scores, out.state, out.extras

    torch_state = {k: torch.from_numpy(v) for k, v in state.items()}
    host = model.host_inputs(torch.from_numpy(clips)) if ex.graph.side_inputs else {}
    with torch.no_grad():
        ref = model.stream_step(torch.from_numpy(clips), torch_state, **host)
    for comp in model.score_components:
        np.testing.assert_allclose(scores[comp], ref["scores"][comp].numpy(), rtol=RTOL, atol=1e-6, err_msg=comp)
    for item in ex.graph.state:
        np.testing.assert_allclose(
            new_state[item.name], ref["state"][item.name].numpy(), rtol=RTOL, atol=1e-5, err_msg=item.name
        )
        if name.startswith("mnad"):  # the gate is open: the written memory differs from the input
            assert not np.allclose(new_state[item.name], state[item.name])
    assert extras["error_map"].shape[0] == BATCH and np.isfinite(extras["error_map"]).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_streaming_parity_over_a_video(name, exported):
    """110 frames of one synthetic video, the state carried by the ONNX caller: the same score sequence."""
    ex = exported(name)
    frames = _frames(ex.model.spec, 110, seed=3)
    want = StreamRunner.for_torch(ex.model, ex.state).score_frames(frames)
    got = StreamRunner.for_model(ex.path, ex.graph, ex.model.clip_length, ex.state_np()).score_frames(frames)
    assert len(next(iter(got.values()))) == 110 - ex.model.clip_length + 1 >= 100
    for comp in ex.model.score_components:
        np.testing.assert_allclose(got[comp], want[comp], rtol=RTOL, atol=1e-6, err_msg=comp)


def test_adapted_parameters_are_graph_inputs(exported):
    """MPN: adapted θ' fed as inputs give what torch computes with the same θ' (no re-export)."""
    if "mpn" not in FAMILIES:
        pytest.skip("MPN is not registered")
    ex = exported("mpn")
    assert ex.graph.params, "MPN should expose its adaptable parameters as inputs"
    g = torch.Generator().manual_seed(5)
    theta = {k: torch.from_numpy(v) + 0.05 * torch.randn(v.shape, generator=g) for k, v in ex.params.items()}
    clips = np.stack([_frames(ex.model.spec, ex.model.clip_length, seed=s) for s in range(BATCH)])
    runner = StreamRunner.for_model(ex.path, ex.graph, ex.model.clip_length, ex.state_np())
    adapted = runner.call_params(BATCH, {k: v.numpy() for k, v in theta.items()})
    scores = runner.step(clips, runner.batched_state(BATCH), adapted).scores
    with torch.no_grad():
        ref = ex.model.stream_step(torch.from_numpy(clips), {}, params=theta)
        base = ex.model.stream_step(torch.from_numpy(clips), {})
    for comp in ex.model.score_components:
        np.testing.assert_allclose(scores[comp], ref["scores"][comp].numpy(), rtol=RTOL, atol=1e-6)
    assert not np.allclose(ref["scores"]["psnr"].numpy(), base["scores"]["psnr"].numpy())


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    """INT8 (`cpu` profile, 6 synthetic clips) of a variant, made once per module: (path, report)."""
    from vadedge.calibration.int8 import ClipFeeds, Int8Options, quantize_int8
    from vadedge.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("int8")
    data = generate_dataset(
        root / "normal", train_videos=1, test_videos=1, frames_per_video=14, height=SIZE, width=SIZE, seed=4
    )
    cache: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in cache:
            ex = exported(name)
            reader = ClipFeeds(ex.path, ex.graph, ex.model.spec, ex.model.clip_length, ex.state_np(), data, max_clips=6)
            out = root / f"{name}.int8.onnx"
            cache[name] = (out, quantize_int8(ex.path, out, reader, options=Int8Options.for_target("cpu", max_clips=6)))
        return cache[name]

    return get


@pytest.mark.parametrize("name", [n for n in VARIANTS if n in ("mpn", "maam-net", "mnad-pred+upsample=resize")])
def test_int8_with_params_and_side_inputs(name, exported, quantized):
    """INT8 calibration feeds MPN's shared θ once and computes MAAM-Net's flow for every clip."""
    from vadedge.calibration.int8 import check_memory_nodes_float

    ex = exported(name)
    out, report = quantized(name)
    assert report.clips >= 6 and report.quantized_nodes > 0
    check_memory_nodes_float(onnx.load(str(out)))
    frames = _frames(ex.model.spec, 12, seed=5)
    ref = StreamRunner.for_model(ex.path, ex.graph, ex.model.clip_length, ex.state_np()).score_frames(frames)
    got = StreamRunner.for_model(out, ex.graph, ex.model.clip_length, ex.state_np()).score_frames(frames)
    for comp in ex.model.score_components:
        assert np.isfinite(got[comp]).all()
        assert np.corrcoef(got[comp], ref[comp])[0, 1] > 0.5 or np.allclose(got[comp], ref[comp], rtol=0.1)


def test_resize_decoder_is_int8_end_to_end_on_cpu(exported, quantized):
    """The `resize` decoder leaves no ConvTranspose, and the cpu profile quantises its Resize ops too."""
    ex = exported("mnad-pred+upsample=resize")
    proto = onnx.load(str(ex.path))
    ops = [n.op_type for n in proto.graph.node]
    assert "ConvTranspose" not in ops and ops.count("Resize") == 3
    out, _ = quantized("mnad-pred+upsample=resize")
    q = onnx.load(str(out))
    producers = {o: n for n in q.graph.node for o in n.output}
    resizes = [n for n in q.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 3
    assert all(producers[n.input[0]].op_type == "DequantizeLinear" for n in resizes)
