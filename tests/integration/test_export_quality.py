"""The export-quality experiment (FP32 / FP16 / INT8 in ONNX Runtime, both protocols, interleaved timing)
on a tiny model and synthetic data."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from vadedge.errors import ConfigError  # noqa: E402
from vadedge.synthetic import generate_dataset  # noqa: E402
from vadedge.train.checkpoint import save_checkpoint  # noqa: E402
from vadedge.train.experiments.export_quality import main, parse_variant  # noqa: E402
from vadedge.train.registry import get_model_entry, resolve_config  # noqa: E402


def test_parse_variant():
    assert parse_variant("fp32") == {"name": "fp32", "precision": "fp32"}
    assert parse_variant("fp16:keep=memory+tail")["keep"] == ["memory", "tail"]
    assert parse_variant("fp16:keep=none")["keep"] == []
    v = parse_variant("int8:trt:entropy")
    assert (v["target"], v["method"]) == ("trt", "entropy")
    with pytest.raises(ConfigError):
        parse_variant("int4")
    with pytest.raises(ConfigError):
        parse_variant("int8:gpu")


def test_export_quality_end_to_end(tmp_path, capsys):
    data = generate_dataset(
        tmp_path / "data", train_videos=2, test_videos=2, frames_per_video=24, height=32, width=32, seed=2
    )
    cfg = resolve_config("mnad-pred", "edge-xs", {"height": 32, "width": 32})
    torch.manual_seed(0)
    model = get_model_entry("mnad-pred").build(cfg["model"]).eval()
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, model, model.initial_state(), {**cfg, "seed": 0})
    out = tmp_path / "quality"
    main(
        [
            str(ckpt),
            "--data",
            str(data),
            "--out",
            str(out),
            "--variants",
            "fp32,fp16,int8:cpu:minmax",
            "--calib-clips",
            "10",
            "--rounds",
            "3",
            "--quiet",
        ]
    )
    res = json.loads((out / "results.json").read_text())
    assert list(res["variants"]) == ["fp32", "fp16", "int8:cpu:minmax"]
    for r in res["variants"].values():
        for protocol in ("paper", "streaming"):
            assert 0.0 <= r[protocol]["auc"] <= 1.0
            assert r[protocol]["frames"] == 2 * (24 - 4)
    assert res["variants"]["fp16"]["agreement_vs_fp32"]["psnr"]["max_abs"] < 0.1
    assert 0 < res["build"]["int8:cpu:minmax"]["clips"] <= 10
    assert [row["name"] for row in res["latency"]["rows"]] == ["fp32", "fp16", "int8:cpu:minmax"]
    assert res["latency"]["rows"][0]["speedup"] == pytest.approx(1.0)
    printed = capsys.readouterr().out
    assert "| int8:cpu:minmax |" in printed and (out / "results.md").is_file()
