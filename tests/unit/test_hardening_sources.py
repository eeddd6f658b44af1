"""Live-source hardening: reconnects are bounded and logged, live vs finite follows what the capture
reports, and an event open while a live source is down is closed with reason "source_lost"."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from vadedge.errors import DataError
from vadedge.runtime.sources import CaptureSource, IterableSource, open_source


class Capture:
    """Opens fine; yields `n` frames, then nothing; reports `count` as its frame count."""

    def __init__(self, n=0, count=0.0):
        self.n, self.count = n, count

    def isOpened(self):  # noqa: N802 - OpenCV's naming
        return True

    def read(self):
        if self.n <= 0:
            return False, None
        self.n -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def set(self, *a):
        return True

    def get(self, prop):
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_FRAME_COUNT: self.count}.get(prop, 0.0)

    def release(self):
        pass


def test_a_stream_that_connects_but_never_yields_a_frame_gives_up(caplog):
    opened = []
    factory = lambda t: opened.append(t) or Capture(0)  # noqa: E731
    src = CaptureSource("rtsp://cam/x", live=True, capture_factory=factory, max_reconnects=4,
                        sleep=lambda s: None).open()
    with caplog.at_level(logging.WARNING, logger="vadedge.runtime.sources"):
        with pytest.raises(DataError, match="could not reconnect after 4 attempts without a frame"):
            list(src)
    src.close()
    assert len(opened) == 5  # the open + 4 reconnects, not forever
    assert len([r for r in caplog.records if "reconnecting in" in r.getMessage()]) == 4


def test_frames_between_losses_reset_the_reconnect_budget():
    plan = [Capture(2), Capture(2), Capture(2), Capture(0), Capture(0)]
    src = CaptureSource("rtsp://cam/x", live=True, capture_factory=lambda t: plan.pop(0),
                        max_reconnects=2, sleep=lambda s: None, queue_size=64).open()
    got = []
    with pytest.raises(DataError):
        for f in src:
            got.append(f)
    src.close()
    # three captures with frames (two reconnects, each followed by frames), then two frameless
    # reconnects use up the budget of 2 in a row
    assert len(got) == 6 and src.reconnects == 4


@pytest.mark.parametrize("count, live", [(40.0, False), (0.0, True), (-9.2e18, True)])
def test_a_url_is_live_unless_it_reports_a_frame_count(count, live):
    src = open_source("http://127.0.0.1:9/x", capture_factory=lambda t: Capture(3, count))
    assert src.live is live and src.total == (None if live else 40)
    src.close()


def test_an_event_open_while_a_live_source_is_down_closes_as_source_lost(tmp_path):
    pytest.importorskip("onnx")
    from vadedge.runtime import Detector
    from vadedge.runtime.pipeline import run_source
    from vadedge.runtime.testing import make_toy_bundle

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
