"""DLAN-AC end to end through the CLI on a tiny synthetic dataset: AC stage, formal training, eval."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from vadedge.cli import cli  # noqa: E402

pytestmark = pytest.mark.slow


def _train(data, out, *extra, quiet=True):
    return CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "dlan-ac",
            "--preset",
            "edge-xs",
            "--data",
            str(data),
            "--out",
            str(out),
            "--batch-size",
            "8",
            "--threads",
            "1",
            *(["--quiet"] if quiet else []),
            *extra,
        ],
    )


def test_dlan_full_run_then_eval(tiny_root, tmp_path):
    from vadedge.train.checkpoint import load_checkpoint

    out = tmp_path / "dlan"
    res = _train(tiny_root, out, "--epochs", "1", quiet=False)  # the AC stage logs at INFO (hidden by -q)
    assert res.exit_code == 0, res.output + res.stderr
    assert "AC pre-clustering epoch 4/4" in res.stderr  # edge-xs: 4 AC epochs before the formal one
    assert "Adaptive Clusterer: M = " in res.stderr
    cfg = json.loads((out / "config.json").read_text())
    m = cfg["model"]["num_prototypes"]
    assert isinstance(m, int) and 1 <= m <= 25
    ckpt = load_checkpoint(out)
    assert ckpt.model.num_prototypes == m and ckpt.state == {}

    res = _train(tiny_root, out, "--epochs", "2", "--resume", quiet=False)  # resuming must not re-cluster
    assert res.exit_code == 0, res.output + res.stderr
    assert "epoch 2/2" in res.stderr  # the formal epoch's line: the log is on, the AC stage is not
    assert "Adaptive Clusterer" not in res.stderr and "AC pre-clustering" not in res.stderr
    assert json.loads((out / "config.json").read_text())["model"]["num_prototypes"] == m

    res = CliRunner().invoke(
        cli,
        [
            "eval",
            "--model",
            str(out),
            "--data",
            str(tiny_root),
            "--protocol",
            "paper",
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
    assert 0.0 <= result["protocols"]["paper"]["auc"] <= 1.0


def test_dlan_ae_stage_then_main_stage(tiny_root, tmp_path):
    ae, main = tmp_path / "ae", tmp_path / "main"
    res = _train(tiny_root, ae, "--stage", "ae", "--epochs", "1", quiet=False)
    assert res.exit_code == 0, res.output + res.stderr
    assert "Adaptive Clusterer" not in res.stderr
    assert json.loads((ae / "config.json").read_text())["model"]["num_prototypes"] is None
    res = _train(tiny_root, main, "--stage", "main", "--init", str(ae), "--epochs", "1", quiet=False)
    assert res.exit_code == 0, res.output + res.stderr
    assert "AC pre-clustering" not in res.stderr and "Adaptive Clusterer: M = " in res.stderr
    assert json.loads((main / "config.json").read_text())["model"]["num_prototypes"] >= 1
    res = _train(tiny_root, tmp_path / "bad", "--stage", "meta", "--epochs", "1")
    assert res.exit_code == 2 and "dlan-ac stages" in res.stderr
