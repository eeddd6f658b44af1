"""`vadedge bench` end to end on a tiny model: every requested row printed (unavailable ones with the
reason), the JSON schema, the plot, and bad input exiting with code 2. No timing is asserted."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402

ALL = "torch,ort-fp32,ort-fp16,ort-int8,trt"
FAST = ["--settle", "0", "--frames", "6", "--rounds", "1", "--stream-steps", "2", "--sgemm-n", "64"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_bundle(tmp_path_factory.mktemp("bench") / "toy", batch="dynamic", height=32, width=32)


def test_bench_prints_every_requested_row_and_writes_json(toy, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("matplotlib")
    from vadedge.bench import SCHEMA

    out = tmp_path / "bench.json"
    png = tmp_path / "scaling.png"
    model = str(toy / "model.onnx")  # stands in for the FP16 / INT8 models: same I/O
    res = CliRunner().invoke(
        cli,
        [
            "bench",
            "--model",
            str(toy),
            "--backends",
            ALL,
            "--fp16",
            model,
            "--int8",
            model,
            "--streams",
            "2",
            "--rss-frames",
            "8",
            "--json",
            str(out),
            "--plot",
            str(png),
            "--workdir",
            str(tmp_path / "work"),
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for backend in ALL.split(","):
        assert any(line.startswith(backend + " ") for line in lines), (backend, res.output)
    torch_line = next(line for line in lines if line.startswith("torch "))
    assert "unavailable" in torch_line  # the toy bundle has no training checkpoint
    trt_line = next(line for line in lines if line.startswith("trt "))
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert "unavailable" in trt_line and "TensorRT" in trt_line
    assert "SGEMM peak" in res.output and "throughput vs streams" in res.output

    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    rows = {r["backend"]: r for r in doc["rows"]}
    assert [r["backend"] for r in doc["rows"]] == ALL.split(",")
    assert not rows["torch"]["available"] and rows["torch"]["reason"]
    for b in ("ort-fp32", "ort-fp16", "ort-int8"):
        r = rows[b]
        assert r["available"] and r["reason"] is None
        assert r["latency_ms"]["calls"] == 6 and r["latency_ms"]["p95"] >= r["latency_ms"]["p50"] > 0
        assert r["fps"] > 0 and r["e2e_fps"] > 0
        assert r["e2e_ratio"] == pytest.approx(r["e2e_fps"] / r["fps"], rel=1e-2)
        assert sum(e["scored"] for e in r["e2e_runs"]) == 6  # frames + clip_length - 1 decoded, 6 scored
        assert r["rss"]["frames"] == 8 and r["rss_mb"] > 0
    assert set(doc["ratios"]) == {"ort-int8/ort-fp32", "ort-fp16/ort-fp32"}
    assert doc["sgemm"]["gflops"] > 0 and doc["sgemm"]["n"] == 64
    assert doc["streams"]["counts"] == [1, 2] and set(doc["streams"]["fps"]) == {"ort-fp32", "ort-fp16", "ort-int8"}
    assert doc["sizes"] is None
    assert png.is_file() and png.stat().st_size > 1000 and doc["plot"] == str(png)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backends", "ort-fp32,cuda"], "unknown backend 'cuda'"),
        (["--model", "/no/such/bundle"], "does not exist"),
        (["--frames", "0"], "frames must be >= 1"),
        (["--sizes", "10x10"], "multiples of 8"),
    ],
)
def test_bad_input_exits_2_with_a_message(toy, args, message):
    base = ["bench", "--model", str(toy), "--rss-frames", "0", "--streams", "0"]
    res = CliRunner().invoke(cli, base + args if "--model" not in args else ["bench", *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_no_available_backend_still_lists_the_rows(toy):
    res = CliRunner().invoke(
        cli, ["bench", "--model", str(toy), "--backends", "torch", "--streams", "0", "--rss-frames", "0", *FAST]
    )
    assert res.exit_code == 1
    assert "torch" in res.output and "unavailable" in res.output


@pytest.mark.slow
def test_bench_on_a_checkpoint_exports_and_quantises(tmp_path):
    torch = pytest.importorskip("torch")
    from vadedge.synthetic import generate_dataset
    from vadedge.train.checkpoint import save_checkpoint
    from vadedge.train.registry import get_model_entry, resolve_config

    data = generate_dataset(
        tmp_path / "synth", train_videos=1, test_videos=1, frames_per_video=16, height=32, width=32, seed=1
    )
    cfg = resolve_config("mnad-pred", "edge-xs", {"height": 32, "width": 32})
    torch.manual_seed(0)
    model = get_model_entry("mnad-pred").build(cfg["model"]).eval()
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, model, model.initial_state(), {**cfg, "data": None, "seed": 0})
    out = tmp_path / "b.json"
    res = CliRunner().invoke(
        cli,
        [
            "bench",
            "--model",
            str(ckpt),
            "--backends",
            "torch,ort-fp32,ort-int8",
            "--calib-data",
            str(data),
            "--calib-clips",
            "4",
            "--streams",
            "0",
            "--rss-frames",
            "0",
            "--json",
            str(out),
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    rows = {r["backend"]: r for r in doc["rows"]}
    assert all(rows[b]["available"] for b in rows), doc["rows"]
    assert rows["ort-int8"]["detail"]["int8"]["quantized_nodes"] > 0
    assert doc["model"]["gmac_per_frame"] > 0 and rows["ort-fp32"]["gflops"] > 0
    assert set(doc["ratios"]) >= {"ort-fp32/torch", "ort-int8/ort-fp32"}
