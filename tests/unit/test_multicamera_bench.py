"""examples/multicamera_bench.py: the config it writes is a valid `vadedge run --config` file and
the modes' order rotates between repeats (docs/benchmarks.md, "Four cameras: one process vs four")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("yaml")
pytest.importorskip("pydantic")

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "multicamera_bench.py"


def _script():
    spec = importlib.util.spec_from_file_location("multicamera_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_scores_every_frame_on_one_shared_detector(tmp_path):
    from vadedge.runconfig import load_config

    mb = _script()
    videos = [tmp_path / f"cam{i}.avi" for i in range(4)]
    (tmp_path / "c.yaml").write_text(mb.config_text(videos, None, 2, tmp_path / "state"))
    cfg = load_config(tmp_path / "c.yaml")
    assert [c.name for c in cfg.cameras] == ["cam0", "cam1", "cam2", "cam3"]
    assert all(c.all_frames and c.threads == 2 and c.bundle is None for c in cfg.cameras)
    four = mb.mode_commands("four", videos, "B", tmp_path)
    assert len(four) == 4 and all("--all-frames" in c and c[-2:] == ["--model", "B"] for c in four)


def test_rotations_put_each_mode_first_in_turn():
    mb = _script()
    assert mb.rotations(["a", "b", "c"], 3) == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
