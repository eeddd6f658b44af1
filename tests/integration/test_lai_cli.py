"""Lai et al. end to end through the CLI on a tiny synthetic dataset: train -> checkpoint -> eval."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from vadedge.cli import cli  # noqa: E402

pytestmark = pytest.mark.slow


def test_lai_train_then_eval(tiny_root, tmp_path):
    from vadedge.train.checkpoint import load_checkpoint, load_tensors

    out = tmp_path / "lai"
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "train",
            "--model",
            "lai",
            "--preset",
            "edge-xs",
            "--data",
            str(tiny_root),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--threads",
            "1",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "trained lai (edge-xs)" in res.output
    weights = load_tensors(out / "model.safetensors")
    assert weights["memory"].shape == (100, 64)
    assert any(k.startswith("diff_decoder.") for k in weights)  # trained, saved, but not in stream_step
    assert load_tensors(out / "state.safetensors") == {}
    ckpt = load_checkpoint(out)
    assert ckpt.model.memory.norm(dim=-1).sub(1).abs().max() < 1e-5  # last write flushed: unit items

    res = runner.invoke(
        cli,
        [
            "eval",
            "--model",
            str(out),
            "--data",
            str(tiny_root),
            "--protocol",
            "both",
            "--no-plots",
            "--quiet",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "ev" / "results.json").read_text())
    for proto in ("paper", "streaming"):
        assert 0.0 <= result["protocols"][proto]["auc"] <= 1.0
    assert set(result["calibration"]["stats"]) == {"psnr", "feature_distance"}


def test_lai_unknown_preset_exits_2(tiny_root, tmp_path):
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "lai",
            "--preset",
            "nope",
            "--data",
            str(tiny_root),
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ],
    )
    assert res.exit_code == 2 and "no preset 'nope'" in res.output
