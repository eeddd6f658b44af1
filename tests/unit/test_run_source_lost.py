"""An event open while a live source is down is closed with reason "source_lost"."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vadedge.runtime.sources import IterableSource


def test_an_event_open_while_a_live_source_is_down_closes_as_source_lost(tmp_path):
    pytest.importorskip("onnx")
    from tests.fakes.bundles import make_toy_bundle
    from vadedge.runtime import Detector
    from vadedge.runtime.pipeline import run_source

    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9))
    rng = np.random.default_rng(0)

    def camera():  # 10 frames, a 1.5 s outage, 10 more frames
        for i in range(20):
            if i == 10:
                time.sleep(1.5)
            yield rng.integers(0, 255, (32, 32, 3), np.uint8)

    det = Detector.load(bundle)
    src = IterableSource(camera(), live=True, queue_size=64).open()
    summary = run_source(det, src, events=tmp_path / "ev.jsonl", progress=False, source_lost_after=0.5)
    reasons = [e.reason for e in summary.events]
    assert reasons == ["source_lost", "stream_end"]
    assert summary.events[0].end_frame == 9 and summary.events[1].start_frame >= 10
