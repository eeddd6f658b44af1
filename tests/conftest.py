"""Shared fixtures: a small synthetic dataset (generated once per session) and the Ped2 location."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PED2 = REPO.parent / "shared" / "datasets" / "ped2"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """4 normal training videos and 3 test videos (one per anomaly kind), 64x64... written once."""
    from vadedge.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("synthetic"), train_videos=4, test_videos=3,
                            frames_per_video=60, height=64, width=96, seed=0)


@pytest.fixture
def ped2_root() -> Path:
    if not (PED2 / "labels.json").is_file():
        pytest.skip("../shared/datasets/ped2 is not present")
    return PED2


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """2 training and 2 test videos of 24 frames at 48x64: enough for one-epoch CLI runs of a family."""
    from vadedge.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("tiny"), train_videos=2, test_videos=2,
                            frames_per_video=24, height=48, width=64, seed=3)
