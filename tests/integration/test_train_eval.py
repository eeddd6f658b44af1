"""End to end through the CLI: train briefly on generated data, evaluate, check the outputs and AUC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from vadedge.cli import cli  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "mnad"
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mnad-pred",
            "--preset",
            "edge-xs",
            "--data",
            str(synthetic_root),
            "--out",
            str(out),
            "--epochs",
            "6",
            "--input-size",
            "64x96",
            "--quiet",
            "--seed",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "trained mnad-pred (edge-xs) for 6 epochs" in res.output
    return out


def test_checkpoint_files(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"model.safetensors", "state.safetensors", "config.json", "optimizer.safetensors", "trainer.json"} <= names
    assert not any(n.endswith((".pt", ".pth", ".pkl")) for n in names)
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["name"] == "mnad-pred" and cfg["model"]["height"] == 64 and len(cfg["history"]) == 6


def test_eval_auc_clearly_above_chance(trained, synthetic_root, tmp_path):
    res = CliRunner().invoke(
        cli, ["eval", "--model", str(trained), "--data", str(synthetic_root), "--out", str(tmp_path), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocols"]["paper"]["auc"] > 0.7
    assert results["protocols"]["streaming"]["auc"] > 0.7
    for f in ("roc.png", "scores_paper.png", "scores_streaming.png", "scores.csv"):
        assert (tmp_path / f).stat().st_size > 0
    assert "AUC (pooled)" in res.output


def test_resume_continues_from_last_epoch(trained, synthetic_root, tmp_path):
    import shutil

    run = tmp_path / "resume"
    shutil.copytree(trained, run)
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mnad-pred",
            "--data",
            str(synthetic_root),
            "--out",
            str(run),
            "--epochs",
            "7",
            "--resume",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    hist = json.loads((run / "config.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == list(range(1, 8))


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "nope", "--data", "{data}", "--out", "{tmp}/x"], "unknown model"),
        (["train", "--model", "mnad-pred", "--preset", "huge", "--data", "{data}", "--out", "{tmp}/x"], "no preset"),
        (["train", "--model", "mnad-pred", "--data", "{tmp}/missing", "--out", "{tmp}/x"], "does not exist"),
        (["eval", "--model", "{tmp}", "--data", "{data}"], "not a vadedge checkpoint"),
        (["train", "--model", "mnad-pred", "--data", "{data}", "--out", "{tmp}/x", "--resume"], "no resumable"),
    ],
)
def test_cli_bad_input_exits_2(args, message, synthetic_root, tmp_path):
    argv = [a.format(data=synthetic_root, tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "vadedge.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
