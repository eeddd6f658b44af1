"""SIGINT / SIGTERM / SIGHUP to a `vadedge run` subprocess: every reported event is on disk, open ones are
closed, every CSV row is written, and the exit code is 128 + the signal number."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.runtime.sinks import read_events  # noqa: E402
from vadedge.synthetic import write_video  # noqa: E402


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_stop_signals_leave_every_reported_event_and_row_on_disk(tmp_path, signal_vadedge, sig, code):
    # every frame is anomalous (threshold far below any score): an event opens on the first scored
    # frame and stays open until the run is interrupted
    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9))
    frames = np.random.default_rng(0).integers(0, 255, (5000, 32, 32, 3), np.uint8)
    video = write_video(tmp_path / "long.avi", frames, fps=25)
    events, scores = tmp_path / "events.jsonl", tmp_path / "scores.csv"
    rc, out, err = signal_vadedge(
        ["run", video, "--model", bundle, "--events", events, "--scores", scores, "--quiet"],
        ready=lambda: events.is_file() and events.stat().st_size > 0,
        sig=sig,
    )
    assert rc == code, err
    assert "interrupted after" in out and "Traceback" not in err
    recs = read_events(events)
    assert [r["type"] for r in recs] == ["start", "end"]
    assert recs[1]["reason"] == "interrupted" and recs[1]["id"] == recs[0]["id"]
    n = int(out.split("interrupted after ")[1].split()[0])
    assert 0 < n < 5000 and recs[1]["end_frame"] == n - 1
    rows = Path(scores).read_text().splitlines()
    assert len(rows) == n + 1  # header + one row per processed frame: the CSV was finalised
