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

    return generate_dataset(
        tmp_path_factory.mktemp("synthetic"),
        train_videos=4,
        test_videos=3,
        frames_per_video=60,
        height=64,
        width=96,
        seed=0,
    )


@pytest.fixture
def ped2_root() -> Path:
    if not (PED2 / "labels.json").is_file():
        pytest.skip("../shared/datasets/ped2 is not present")
    return PED2


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """2 training and 2 test videos of 24 frames at 48x64: enough for one-epoch CLI runs of a family."""
    from vadedge.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("tiny"), train_videos=2, test_videos=2, frames_per_video=24, height=48, width=64, seed=3
    )


@pytest.fixture
def signal_vadedge():
    """`run(args, ready, sig)`: start `vadedge ARGS` in a subprocess, send `sig` once `ready()` is true
    (plus `settle` seconds), and return (returncode, stdout, stderr). Timeouts are hang guards only."""
    import os
    import subprocess
    import sys
    import time

    def run(args, ready, sig, settle: float = 0.0, timeout: float = 60.0):
        proc = subprocess.Popen(
            [sys.executable, "-c", "from vadedge.cli import main; main()", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            end = time.monotonic() + timeout
            while not ready() and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.05)
            assert ready(), f"not ready before the signal: {proc.communicate(timeout=timeout)}"
            time.sleep(settle)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        return proc.returncode, out, err

    return run
