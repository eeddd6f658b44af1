"""Sources: frames folder, video file, iterable; live reconnect with backoff; dropped frames; bad specs."""

from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np
import pytest

from vadedge.errors import DataError
from vadedge.runtime.sources import CaptureSource, FolderSource, IterableSource, open_source, parse_camera
from vadedge.synthetic import write_video


def frames(n, h=24, w=32):
    return [np.full((h, w, 3), (i * 7) % 256, np.uint8) for i in range(n)]


def test_folder_source_in_natural_order_with_media_time(tmp_path):
    for i in (0, 1, 2, 10, 11):  # natural order: 2 before 10
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    src = open_source(tmp_path, fps=10)
    assert isinstance(src, FolderSource) and src.total == 5 and not src.live
    got = list(src)
    assert [int(f.image[0, 0, 0]) for f in got] == [0, 1, 2, 10, 11]
    assert [f.index for f in got] == list(range(5))
    assert [f.timestamp for f in got] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    src.close()


def test_video_file_source_decodes_in_its_own_thread(tmp_path):
    path = write_video(tmp_path / "clip.avi", np.stack(frames(20)), fps=20.0)
    seen_threads = set()
    with open_source(str(path)) as src:
        assert src.fps == pytest.approx(20.0) and src.total == 20
        for f in src:
            seen_threads |= {t.name for t in threading.enumerate()}
            assert f.image.shape == (24, 32, 3) and f.image.dtype == np.uint8
        assert src.decoded == 20 and src.dropped == 0
    assert any(n.startswith("vadedge-decode") for n in seen_threads)


def test_iterable_source_with_timestamps():
    src = open_source(((f, 100.0 + i) for i, f in enumerate(frames(3))))
    assert isinstance(src, IterableSource)
    assert [f.timestamp for f in src] == [100.0, 101.0, 102.0]


class FakeCapture:
    """A capture that yields `n` frames then fails (a dropped RTSP connection); reports `count` as
    its frame count (0: a stream)."""

    def __init__(self, n, opened=True, count=0.0):
        self.n, self.opened, self.released, self.count = n, opened, False, count

    def isOpened(self):
        return self.opened

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
        self.released = True


def test_live_source_reconnects_with_exponential_backoff():
    plan = [FakeCapture(3), FakeCapture(0, opened=False), FakeCapture(0, opened=False), FakeCapture(2)]
    opened, sleeps = [], []

    def factory(target):
        opened.append(target)
        return plan.pop(0) if plan else FakeCapture(0, opened=False)

    src = CaptureSource(
        "rtsp://cam/stream",
        live=True,
        capture_factory=factory,
        backoff=(0.5, 1.5),
        max_reconnects=3,
        sleep=sleeps.append,
        queue_size=64,
    ).open()
    got, error = [], None
    try:
        for f in src:
            got.append(f)
    except DataError as exc:
        error = exc
    src.close()
    assert len(got) == 5 and src.reconnects == 1
    assert sleeps[:3] == [0.5, 1.0, 1.5]  # doubled, capped at 1.5
    assert error is not None and "could not reconnect" in str(error)
    assert all(isinstance(f.timestamp, float) and f.timestamp > 1e9 for f in got)  # wall clock


def test_live_source_drops_oldest_frames_when_the_consumer_is_slow():
    n = 60
    produced = threading.Event()

    def camera():
        yield from frames(n)
        produced.set()

    src = open_source(camera(), live=True, queue_size=2)
    got = []
    for f in src:
        got.append(f.index)
        if len(got) == 1:
            assert produced.wait(10)  # the decoder ran ahead while we were "busy"
    assert src.dropped > 0 and len(got) + src.dropped == n
    assert got == sorted(got) and got[-1] == n - 1  # newest frames win


def test_file_like_sources_never_drop():
    src = open_source(iter(frames(40)), queue_size=2)
    got = []
    for f in src:
        got.append(f.index)
        time.sleep(0.002)
    assert got == list(range(40)) and src.dropped == 0


def test_close_stops_the_decoder_early():
    src = open_source(iter(frames(1000)), queue_size=2)
    it = iter(src)
    next(it)
    src.close()
    assert not src._thread.is_alive()


@pytest.mark.parametrize(
    "spec, idx",
    [("camera0", 0), ("cam3", 3), ("0", 0), (2, 2), ("/dev/video5", 5), ("clip.mp4", None), ("rtsp://x", None)],
)
def test_parse_camera(spec, idx):
    assert parse_camera(spec) == idx


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(DataError, match="no such device"):
        open_source("/dev/video97")
    with pytest.raises(DataError, match="cannot open camera 7"):
        open_source("camera7", capture_factory=lambda t: FakeCapture(0, opened=False))
    with pytest.raises(DataError, match="cannot open stream rtsp://"):
        open_source("rtsp://127.0.0.1:9/none", capture_factory=lambda t: FakeCapture(0, opened=False))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(DataError, match="cannot open video file"):
        open_source(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_source(tmp_path / "empty")
    with pytest.raises(DataError, match="iterable"):
        open_source(np.zeros((8, 8, 3), np.uint8))


def test_a_stream_that_connects_but_never_yields_a_frame_gives_up(caplog):
    opened = []
    factory = lambda t: opened.append(t) or FakeCapture(0)  # noqa: E731
    src = CaptureSource(
        "rtsp://cam/x", live=True, capture_factory=factory, max_reconnects=4, sleep=lambda s: None
    ).open()
    with caplog.at_level(logging.WARNING, logger="vadedge.runtime.sources"):
        with pytest.raises(DataError, match="could not reconnect after 4 attempts without a frame"):
            list(src)
    src.close()
    assert len(opened) == 5  # the open + 4 reconnects, not forever
    assert len([r for r in caplog.records if "reconnecting in" in r.getMessage()]) == 4


def test_frames_between_losses_reset_the_reconnect_budget():
    plan = [FakeCapture(2), FakeCapture(2), FakeCapture(2), FakeCapture(0), FakeCapture(0)]
    src = CaptureSource(
        "rtsp://cam/x",
        live=True,
        capture_factory=lambda t: plan.pop(0),
        max_reconnects=2,
        sleep=lambda s: None,
        queue_size=64,
    ).open()
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
    src = open_source("http://127.0.0.1:9/x", capture_factory=lambda t: FakeCapture(3, count=count))
    assert src.live is live and src.total == (None if live else 40)
    src.close()
