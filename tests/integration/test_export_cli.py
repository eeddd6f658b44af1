"""`vadedge export` / `vadedge info` end to end on a tiny checkpoint and synthetic footage, and bad input → exit 2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from vadedge.bundle import load_bundle  # noqa: E402
from vadedge.calibration.int8 import check_memory_nodes_float  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.export import export_bundle  # noqa: E402
from vadedge.export.functions import DOMAIN  # noqa: E402
from vadedge.export.verify import check_bundle  # noqa: E402
from vadedge.runtime.runner import StreamRunner  # noqa: E402
from vadedge.synthetic import generate_dataset  # noqa: E402
from vadedge.train.checkpoint import save_checkpoint  # noqa: E402
from vadedge.train.registry import get_model_entry, resolve_config  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("data") / "synth",
        train_videos=2,
        test_videos=1,
        frames_per_video=24,
        height=32,
        width=32,
        seed=1,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data):
    cfg = resolve_config("mnad-pred", "edge-xs", {"height": 32, "width": 32})
    torch.manual_seed(0)
    model = get_model_entry("mnad-pred").build(cfg["model"]).eval()
    out = tmp_path_factory.mktemp("ckpt") / "mnad"
    save_checkpoint(
        out,
        model,
        model.initial_state(),
        {**cfg, "data": {"root": str(data), "fingerprint": "test", "videos": 2, "clips": 40}, "seed": 0},
    )
    return out


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_int8_export_cli_writes_a_calibrated_bundle(tmp_path, checkpoint, data):
    out = tmp_path / "bundle"
    res = _invoke(
        "export",
        checkpoint,
        "--precision",
        "int8",
        "--calib-data",
        data,
        "--calib-clips",
        12,
        "--batch",
        "dynamic",
        "--out",
        out,
        "--quiet",
    )
    assert res.exit_code == 0, res.output
    assert "mnad-pred" in res.output and "threshold" in res.output
    b = check_bundle(out)
    m = b.manifest
    assert m.models == {"fp32": "model.onnx", "int8": "model.int8.onnx"} and m.precision == "int8"
    assert m.graph.batch == "dynamic"
    assert m.input.fps == 10  # the checkpoint's config names no rate: the Ped2 default is recorded
    assert set(m.score.calibration) == {"psnr", "feature_distance"}
    th = m.score.threshold
    assert th.off < th.on and th.policy == "false_alarm_rate"
    prov = m.provenance
    assert "/" not in json.dumps(prov["int8"]["data"]) and prov["checkpoint"]["relative_path"] == os.path.relpath(
        Path(checkpoint).resolve(), out.resolve()
    )  # no absolute build paths
    assert 0 < prov["int8"]["clips"] <= 12 and prov["int8"]["float_nodes_kept"] == ["MemoryRead", "MemoryUpdate"]
    assert prov["score_calibration"]["precision"] == "int8" and not prov["score_calibration"]["held_out"]
    q = onnx.load(str(out / "model.int8.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    check_memory_nodes_float(q)
    # three streams in one call (dynamic batch) give what three separate calls give
    runner = StreamRunner.from_bundle(b, "int8")
    clips = np.random.default_rng(0).integers(0, 256, (3, 5, 32, 32, 1), dtype=np.uint8)
    together = runner.step(clips, runner.batched_state(3)).scores
    for i in range(3):
        alone = runner.step(clips[i : i + 1], runner.batched_state(1)).scores
        np.testing.assert_allclose(together["psnr"][i], alone["psnr"][0], rtol=1e-5)
    info = _invoke("info", out)
    assert info.exit_code == 0 and "int8" in info.output


def test_fp16_export_api_keeps_memory_nodes_fp32(tmp_path, checkpoint):
    out = export_bundle(checkpoint, tmp_path / "b16", precision="fp16", score_data=False, progress=False)
    b = load_bundle(out)
    assert b.manifest.score.calibration is None and b.manifest.score.threshold is None
    m16 = onnx.shape_inference.infer_shapes(onnx.load(str(out / "model.fp16.onnx")))
    types = {v.name: v.type.tensor_type.elem_type for v in list(m16.graph.value_info) + list(m16.graph.input)}
    mem_nodes = [n for n in m16.graph.node if n.domain == DOMAIN]
    assert mem_nodes and all(
        types[x] == onnx.TensorProto.FLOAT
        for n in mem_nodes
        for x in n.input
        if types.get(x) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    )
    assert any(t == onnx.TensorProto.FLOAT16 for t in types.values())
    frames = np.random.default_rng(1).integers(0, 256, (12, 32, 32, 1), dtype=np.uint8)
    a = StreamRunner.from_bundle(b, "fp32").score_frames(frames, b.state)
    h = StreamRunner.from_bundle(b, "fp16").score_frames(frames, b.state)
    np.testing.assert_allclose(h["psnr"], a["psnr"], atol=0.05)
    # re-exporting over an existing bundle replaces it
    again = export_bundle(checkpoint, out, precision="fp32", score_data=False, progress=False, fps=25)
    assert load_bundle(again).manifest.models == {"fp32": "model.onnx"}
    assert load_bundle(again).manifest.input.fps == 25  # `vadedge export --fps`


def test_trt_engine_path_with_a_fake_tensorrt(tmp_path, checkpoint):
    from tests.fakes.tensorrt import FakeTensorRT

    fake = FakeTensorRT("10.3.0")
    out = export_bundle(
        checkpoint,
        tmp_path / "trt",
        precision="fp16",
        engine="trt",
        score_data=False,
        progress=False,
        trt_options={"trt": fake, "device_info": {"name": "Fake Orin"}},
    )
    m = load_bundle(out).manifest
    (e,) = m.engines
    assert e.file == "model.fp16.engine" and e.precision == "fp16" and e.device == "Fake Orin"
    assert (out / e.file).is_file() and (out / e.sidecar).is_file()
    assert json.loads((out / e.sidecar).read_text())["onnx"] == "model.fp16.onnx"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "int8"], "INT8 needs calibration data"),
        (["--plugins"], "--plugins"),
        (["--batch", "0"], "batch"),
        (["--precision", "int9"], "Invalid value"),
    ],
)
def test_bad_options_exit_2(tmp_path, checkpoint, args, message):
    res = _invoke("export", checkpoint, "--out", tmp_path / "x", *args)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def test_not_a_checkpoint_and_empty_calibration_folder_exit_2(tmp_path, checkpoint):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _invoke("export", empty)
    assert res.exit_code == 2 and "not a vadedge checkpoint" in res.output
    res = _invoke("export", checkpoint, "--precision", "int8", "--calib-data", empty, "--out", tmp_path / "y")
    assert res.exit_code == 2 and "empty" in res.output
    res = _invoke("export", checkpoint, "--precision", "int8", "--calib-data", tmp_path / "nope")
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    res = _invoke("export", checkpoint, "--out", tmp_path / "junk")
    assert res.exit_code == 2 and "not a vadedge bundle" in res.output
    assert (tmp_path / "junk" / "notes.txt").read_text() == "mine"


def test_trt_engine_without_tensorrt_exits_2(tmp_path, checkpoint):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    res = _invoke("export", checkpoint, "--engine", "trt", "--precision", "fp16", "--out", tmp_path / "t")
    assert res.exit_code == 2 and "tensorrt" in res.output.lower() and "vadedge[trt]" in res.output
