"""issue 17: `vadedge triton-repo` writes configs Triton's own model-config schema accepts (parsed
with the protobuf tritonclient ships), the implicit-state names of the GPU variants are the
bundle graph's I/O, and the Python model's sequence logic (`SequenceStreams`) keeps per-sequence
state like the local Detector. No server needed (tests/integration/test_triton_serving.py runs one)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import load_bundle  # noqa: E402
from vadedge.errors import ConfigError  # noqa: E402
from vadedge.runtime.detector import Detector  # noqa: E402
from vadedge.serving.triton_backend import FLAG_WARMUP, SequenceFrame, SequenceStreams  # noqa: E402
from vadedge.serving.triton_repo import RepoOptions, write_model_repository  # noqa: E402


def parse(path):
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.fixture
def bundle(tmp_path):
    return make_toy_bundle(tmp_path / "b", batch="dynamic", memory=(6, 8))


def test_python_model_config_declares_the_sequence_controls(bundle, tmp_path):
    repo = write_model_repository(bundle, tmp_path / "repo", RepoOptions(name="cams", max_batch_size=4))
    cfg = parse(repo / "cams" / "config.pbtxt")
    assert cfg.backend == "python" and cfg.max_batch_size == 4
    kinds = {c.name: c.control[0].kind for c in cfg.sequence_batching.control_input}
    mc = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    ctl = mc.ModelSequenceBatching.Control
    assert kinds == {
        "START": ctl.CONTROL_SEQUENCE_START,
        "END": ctl.CONTROL_SEQUENCE_END,
        "CORRID": ctl.CONTROL_SEQUENCE_CORRID,
    }
    assert cfg.sequence_batching.HasField("oldest")
    assert list(cfg.input[0].dims) == [32, 32, 1]
    assert cfg.parameters["components"].string_value.split(",") == list(load_bundle(bundle).manifest.graph.scores)
    assert (repo / "cams" / "1" / "bundle" / "vadedge.json").is_file()
    assert "TritonPythonModel" in (repo / "cams" / "1" / "model.py").read_text()
    direct = write_model_repository(bundle, tmp_path / "r2", RepoOptions(dynamic_batching=False))
    assert parse(direct / "vadedge" / "config.pbtxt").sequence_batching.HasField("direct")
    assert [g.count for g in cfg.instance_group] == [1]
    two = write_model_repository(bundle, tmp_path / "r3", RepoOptions(instances=2))
    assert [g.count for g in parse(two / "vadedge" / "config.pbtxt").instance_group] == [2]


def test_gpu_configs_parse_and_their_implicit_state_is_the_bundle_graph_io(bundle, tmp_path):
    onnx = pytest.importorskip("onnx")
    b = load_bundle(bundle)
    repo = write_model_repository(b, tmp_path / "repo", RepoOptions(name="vad", gpu=True))
    model = onnx.load(str(repo / "vad_onnx" / "1" / "model.onnx"))
    graph_in = {i.name for i in model.graph.input}
    graph_out = {o.name for o in model.graph.output}
    for suffix, platform in (("onnx", "onnxruntime_onnx"), ("trt", "tensorrt_plan")):
        cfg = parse(repo / f"vad_{suffix}" / "config.pbtxt")
        assert cfg.platform == platform
        states = list(cfg.sequence_batching.state)
        assert [(s.input_name, s.output_name) for s in states] == [(t.input, t.output) for t in b.manifest.graph.state]
        for s, spec in zip(states, b.manifest.graph.state):
            assert s.input_name in graph_in and s.output_name in graph_out
            assert tuple(s.dims) == spec.shape
            init = repo / f"vad_{suffix}" / "initial_state" / s.initial_state[0].data_file
            np.testing.assert_array_equal(np.fromfile(init, np.float32).reshape(spec.shape), b.state[spec.name])
        assert cfg.input[0].name == b.manifest.graph.frames_input
        assert {o.name for o in cfg.output} == set(b.manifest.graph.scores.values()) <= graph_out


def test_gpu_configs_refuse_graphs_with_host_side_inputs(tmp_path):
    b = make_toy_bundle(tmp_path / "p", batch="dynamic", params="batched")
    with pytest.raises(ConfigError, match="Python-backend"):
        write_model_repository(b, tmp_path / "repo", RepoOptions(gpu=True))


def frames(n, seed):
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 1), dtype=np.uint8)


def test_sequence_streams_keep_state_per_correlation_id(bundle):
    seq = SequenceStreams(Detector.load(bundle, backend="onnxruntime", heatmap=False), idle_seconds=60)
    a, b = frames(10, 1), frames(10, 2)
    out = []
    for j in range(10):  # two sequences batched together, plus sequence 5 twice in one call (in order)
        batch = [SequenceFrame(7, j == 0, False, a[j], float(j)), SequenceFrame(9, j == 0, False, b[j], float(j))]
        out.append(seq.step(batch))
    ref_a = Detector.load(bundle, backend="onnxruntime", heatmap=False)
    ref_b = Detector.load(bundle, backend="onnxruntime", heatmap=False)
    for j in range(10):
        la, lb = ref_a.process(a[j], float(j)), ref_b.process(b[j], float(j))
        for got, ref in ((out[j][0], la), (out[j][1], lb)):
            assert bool(got["FLAGS"][0] & FLAG_WARMUP) == ref.warmup
            if not ref.warmup:
                assert math.isclose(float(got["SCORE"][0]), ref.score, abs_tol=1e-5)
    assert seq.sequences == 2
    twice = seq.step([SequenceFrame(5, True, False, a[0], 0.0), SequenceFrame(5, False, False, a[1], 1.0)])
    assert len(twice) == 2 and seq.det.streams["seq5"].frame_index == 1
    seq.step([SequenceFrame(9, False, True, b[0], 10.0)])  # END drops the sequence's state
    assert "seq9" not in seq.det.streams
    restarted = seq.step([SequenceFrame(7, True, False, a[0], 0.0)])[0]  # START again: a fresh stream
    assert restarted["FLAGS"][0] & FLAG_WARMUP and seq.det.streams["seq7"].frame_index == 0


def test_an_end_only_request_drops_the_sequence_without_scoring(bundle):
    seq = SequenceStreams(Detector.load(bundle, backend="onnxruntime", heatmap=False), idle_seconds=60)
    a = frames(3, 1)
    seq.step([SequenceFrame(4, True, False, a[0], 0.0), SequenceFrame(6, True, False, a[0], 0.0)])
    # in one call: sequence 4's next frame is scored first, then its END (NaN timestamp) drops it
    out = seq.step([SequenceFrame(4, False, False, a[1], 1.0), SequenceFrame(4, False, True, a[2], math.nan)])
    assert [json.loads(o["EVENTS"][0])["frame"] for o in out] == [1, -1]  # scored on its stream, then ended
    assert out[1]["FLAGS"][0] & FLAG_WARMUP and math.isnan(float(out[1]["SCORE"][0]))
    assert set(seq.det.streams) == {"seq6"} and seq.sequences == 1
    assert seq.det.streams["seq6"].frame_index == 0  # the other sequence is untouched


def test_idle_sequences_are_forgotten(bundle):
    seq = SequenceStreams(Detector.load(bundle, backend="onnxruntime", heatmap=False), idle_seconds=0.0)
    seq.step([SequenceFrame(1, True, False, frames(1, 0)[0], 0.0)])
    seq.step([SequenceFrame(2, True, False, frames(1, 1)[0], 0.0)])  # 1 is idle by now
    assert set(seq.det.streams) == {"seq2"}


def test_cli_writes_a_repository_and_rejects_a_bad_bundle(bundle, tmp_path):
    from click.testing import CliRunner

    from vadedge.cli import cli

    r = CliRunner().invoke(cli, ["triton-repo", str(bundle), "--out", str(tmp_path / "repo"), "--name", "x"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "repo" / "x" / "config.pbtxt").is_file()
    r = CliRunner().invoke(cli, ["triton-repo", str(tmp_path / "nope"), "--out", str(tmp_path / "r2")])
    assert r.exit_code == 2 and "Traceback" not in r.output


@pytest.mark.parametrize("color", ["gray", "rgb", "bgr"])
def test_edge_resize_then_server_prepare_equals_the_local_prepare(color):
    """What the client sends (resized on the edge, BGR or gray) becomes, after the server's own
    prepare_frame, exactly what the local Detector feeds the model."""
    from vadedge.preprocess import InputSpec, prepare_frame
    from vadedge.serving.client import edge_frame

    spec = InputSpec(32, 48, color)
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    sent = edge_frame(frame, 32, 48, spec.channels)
    assert sent.shape == (32, 48, spec.channels) and sent.dtype == np.uint8
    np.testing.assert_array_equal(prepare_frame(sent, spec), prepare_frame(frame, spec))


@pytest.mark.parametrize(
    "url,ok", [("grpc://h:8001", "h:8001"), ("h:8001", "h:8001"), ("http://h:8000", None), ("grpc://h", None)]
)
def test_server_url(url, ok):
    from vadedge.serving.client import _grpc_address

    if ok is None:
        with pytest.raises(ConfigError):
            _grpc_address(url)
    else:
        assert _grpc_address(url) == ok
