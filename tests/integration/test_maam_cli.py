"""MAAM-Net end to end through the CLI on tiny generated data: train (flow in the data path) → eval."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from vadedge.cli import cli  # noqa: E402
from vadedge.metrics import frame_auc  # noqa: E402
from vadedge.synthetic import generate_dataset  # noqa: E402

pytestmark = pytest.mark.slow
FRAMES = 30


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return generate_dataset(
        tmp_path_factory.mktemp("maam-data"),
        train_videos=2,
        test_videos=3,
        frames_per_video=FRAMES,
        height=48,
        width=64,
        seed=3,
    )


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("maam-run") / "maam"
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "maam-net",
            "--preset",
            "edge-xs",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--input-size",
            "48x64",
            "--quiet",
            "--seed",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "trained maam-net (edge-xs) for 2 epochs" in res.output
    return out


def test_checkpoint_records_provider_scale_and_no_state(trained):
    from vadedge.train.checkpoint import load_tensors

    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["model"]["flow"] == {"name": "dis", "preset": "ultrafast", "finest_scale": 1}
    assert (cfg["model"]["height"], cfg["model"]["width"]) == (48, 64)
    assert [h["epoch"] for h in cfg["history"]] == [1, 2]
    assert {"app", "mot", "spa", "lat", "items"} <= set(cfg["history"][-1])
    scale = load_tensors(trained / "model.safetensors")["pscd_scale"]
    assert (scale > 0).all() and not np.allclose(scale.numpy(), 1.0)  # set from normal training frames
    assert load_tensors(trained / "state.safetensors") == {}


def test_eval_scores_every_frame_after_the_first(trained, tiny_data, tmp_path):
    res = CliRunner().invoke(
        cli,
        ["eval", "--model", str(trained), "--data", str(tiny_data), "--out", str(tmp_path), "--quiet", "--no-plots"],
    )
    assert res.exit_code == 0, res.output
    results = json.loads((tmp_path / "results.json").read_text())
    for proto in ("paper", "streaming"):
        r = results["protocols"][proto]
        assert r["frames"] == 3 * (FRAMES - 1)
        assert 0.0 <= r["auc"] <= 1.0 and not math.isnan(r["auc"])
    assert set(results["calibration"]["stats"]) == {"pscd", "pscd_app", "pscd_mot"}
    with (tmp_path / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {"pscd", "pscd_app", "pscd_mot"} <= set(rows[0])
    assert min(int(r["frame"]) for r in rows if r["video"] == "01") == 1  # frame 0 has no predecessor
    # the motion branch sees the fast / sideways movers even after two epochs
    motion = [r for r in rows if r["video"] in ("01", "02")]
    labels = np.array([int(r["label"]) for r in motion])
    assert frame_auc(labels, np.array([float(r["pscd_mot"]) for r in motion])) > 0.6
