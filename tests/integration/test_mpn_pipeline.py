"""MPN end to end on generated data: the three stages, eval with K-shot adaptation, the scene-shift experiment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from vadedge.cli import cli  # noqa: E402
from vadedge.errors import ConfigError  # noqa: E402
from vadedge.train.checkpoint import load_checkpoint, load_tensors  # noqa: E402
from vadedge.train.experiments import mpn_sceneshift  # noqa: E402

pytestmark = pytest.mark.slow
TINY = {"height": 32, "width": 32}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """2 normal training videos and 2 test videos of 24 frames at 32x32 (minimal compute)."""
    from vadedge.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("mpn_data"),
        train_videos=2,
        test_videos=2,
        frames_per_video=24,
        height=32,
        width=32,
        seed=1,
    )


@pytest.fixture(scope="module")
def experiment(tiny_root, tmp_path_factory) -> tuple[Path, dict]:
    """The whole scene-shift experiment (training included) at toy size."""
    out = tmp_path_factory.mktemp("mpn") / "shift"
    threads = torch.get_num_threads()
    try:
        result = mpn_sceneshift.run(
            tiny_root,
            out,
            preset="edge-xs",
            ks=(0, 1, 3),
            test_shift="blur:1.5",
            epochs={"pretrain": 1, "dpu": 1, "meta": 1},
            batch_size=4,
            model_overrides=TINY,
            threads=1,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return out, result


def test_experiment_writes_table_for_every_k(experiment):
    out, result = experiment
    assert json.loads((out / "sceneshift.json").read_text())["rows"] == result["rows"]
    md = (out / "sceneshift.md").read_text()
    assert "| checkpoint | shift | K |" in md and "blur:1.5" in md
    rows = result["rows"]
    assert [(r["label"], r["shift"], r["k"]) for r in rows] == [
        ("meta", "none", 0),
        ("dpu", "blur:1.5", 0),
        ("meta", "blur:1.5", 0),
        ("meta", "blur:1.5", 1),
        ("meta", "blur:1.5", 3),
    ]
    assert len({r["frames_common"] for r in rows}) == 1  # every K on the same frames
    for r in rows:
        for key in ("auc_paper_common", "auc_paper_code", "auc_streaming_common"):
            assert 0.0 <= r[key] <= 1.0
    assert rows[-1]["adapt_seconds_mean"] > 0
    assert result["config"]["meta_shifts"] and "blur" not in result["config"]["meta_shifts"]


def test_stage_checkpoints(experiment):
    out, _ = experiment
    cfgs = {s: json.loads((out / s / "config.json").read_text()) for s in ("pretrain", "dpu", "meta")}
    assert [cfgs[s]["stage"] for s in cfgs] == ["pretrain", "dpu", "meta"]
    assert cfgs["dpu"]["init"].endswith("pretrain") and cfgs["meta"]["init"].endswith("dpu")
    assert isinstance(cfgs["meta"]["train"]["epochs"], int)  # per-stage value resolved
    w = {s: load_tensors(out / s / "model.safetensors") for s in cfgs}
    assert float(w["pretrain"]["dpu_gate"]) == 0.0 and float(w["dpu"]["dpu_gate"]) == 1.0
    model = load_checkpoint(out / "meta").model
    for name in w["meta"]:
        changed = not torch.equal(w["dpu"][name], w["meta"][name])
        adaptable = name in model.adaptable_names or name.startswith("meta_alpha.")
        assert changed == adaptable or (adaptable and name.endswith("bias")), name
    assert load_tensors(out / "meta" / "state.safetensors") == {}


def test_eval_cli_with_adapt_k(experiment, tiny_root, tmp_path):
    out, _ = experiment
    counts = {}
    for k in (0, 2):
        res = CliRunner().invoke(
            cli,
            [
                "eval",
                "--model",
                str(out / "meta"),
                "--data",
                str(tiny_root),
                "--out",
                str(tmp_path / str(k)),
                "--adapt-k",
                str(k),
                "--no-plots",
                "--quiet",
                "--threads",
                "1",
            ],
        )
        assert res.exit_code == 0, res.output
        r = json.loads((tmp_path / str(k) / "results.json").read_text())
        assert r["adapt_k"] == k and 0.0 <= r["protocols"]["paper"]["auc"] <= 1.0
        counts[k] = r["protocols"]["paper"]["frames"]
    assert counts[0] - counts[2] == 2 * 2  # two test videos, two more frames dropped each


def test_cli_meta_stage_from_dpu(experiment, tiny_root, tmp_path):
    out, _ = experiment
    res = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mpn",
            "--preset",
            "edge-xs",
            "--stage",
            "meta",
            "--init",
            str(out / "dpu"),
            "--data",
            str(tiny_root),
            "--out",
            str(tmp_path / "m"),
            "--input-size",
            "32x32",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--quiet",
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["stage"] == "meta"
    bad = CliRunner().invoke(
        cli,
        [
            "train",
            "--model",
            "mpn",
            "--stage",
            "finetune",
            "--data",
            str(tiny_root),
            "--out",
            str(tmp_path / "x"),
            "--input-size",
            "32x32",
            "--quiet",
        ],
    )
    assert bad.exit_code == 2 and "stage" in bad.output


def test_experiment_rejects_a_shift_seen_in_meta_training(experiment, tiny_root, tmp_path):
    out, _ = experiment
    with pytest.raises(ConfigError, match="used in meta-training"):
        mpn_sceneshift.run(tiny_root, tmp_path, meta=out / "meta", test_shift="noise", progress=False)


def test_control_rows_adapt_on_other_clips(experiment, tiny_root, tmp_path):
    """--controls: θ' from the unshifted clips / the next video really differs from the own-clip θ'."""
    out, _ = experiment
    result = mpn_sceneshift.run(
        tiny_root,
        tmp_path,
        meta=out / "meta",
        ks=(1,),
        test_shift="blur:1.5",
        streaming=False,
        progress=False,
        controls=True,
        threads=1,
    )
    rows = result["rows"]
    assert [r.get("adapted_on") for r in rows] == [None, None, "same video under none", "next test video"]
    assert all(r["k"] == 1 for r in rows[1:]) and len({r["frames_common"] for r in rows}) == 1
    own, clean, other = rows[1], rows[2], rows[3]
    assert own["psnr_normal"] != clean["psnr_normal"] and own["psnr_normal"] != other["psnr_normal"]
    assert "θ' from next test video" in (tmp_path / "sceneshift.md").read_text()


@pytest.mark.ped2
def test_ped2_clip_under_shift_scores(ped2_root):
    from vadedge.datasets import open_split
    from vadedge.train.models.mpn_shifts import parse_shift
    from vadedge.train.registry import create_model

    model = create_model("mpn", "edge-s").eval()
    video = open_split(ped2_root, "testing").videos[0]
    video.frame_files = video.frame_files[:5]
    frames = parse_shift("blur:1.5").apply(video.load(model.spec))
    with torch.no_grad():
        out = model.stream_step(torch.from_numpy(frames).unsqueeze(0), {})
    assert all(np.isfinite(v.numpy()).all() for v in out["scores"].values())
