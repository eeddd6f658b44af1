"""Issue 15 regressions in the SDK: timestamps are validated, a raising event callback does not
desynchronise the other streams of a process_many call, sinks turn disk full into one DataError."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.errors import CallbackError, DataError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402
from vadedge.runtime.results import Event, FrameResult  # noqa: E402
from vadedge.runtime.sinks import EventLog, ScoreCSV  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # dynamic batch: every ready stream shares one call; every scored frame is anomalous
    return make_toy_bundle(tmp_path_factory.mktemp("toy") / "toy", batch="dynamic", threshold=(-1e9, -1e9))


def frames(n, seed):
    return list(np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), np.uint8))


@pytest.mark.parametrize("bad", ["abc", None, float("nan"), math.inf, [1.0], object()])
def test_bad_timestamps_are_data_errors_and_change_nothing(bundle, bad):
    det = Detector.load(bundle)
    with pytest.raises(DataError, match="stream 'default': timestamp"):
        det.process(frames(1, 0)[0], bad) if bad is not None else det.process_many(
            {"default": frames(1, 0)[0]}, {"default": bad}
        )
    assert det.stream("default").frame_index == -1  # nothing was fed
    with pytest.raises(DataError, match="mapping"):
        det.process_many([frames(1, 0)[0]])


def test_a_raising_callback_leaves_the_other_streams_in_step(bundle):
    a, b = frames(12, 1), frames(12, 2)
    ref = Detector.load(bundle)
    expected = [ref.process(f) for f in b]  # stream b alone, nobody raising

    det = Detector.load(bundle)
    seen = []

    def cb(e: Event) -> None:
        seen.append((e.stream, e.is_open))
        if e.stream == "a":
            raise RuntimeError("callback bug")

    det.on_event(cb)
    got, errors = [], []
    for fa, fb in zip(a, b):
        try:
            out = det.process_many({"a": fa, "b": fb})
        except CallbackError as exc:
            errors.append(exc)
            out = exc.results
        got.append(out["b"])
    assert len(errors) == 1 and "stream 'a'" in str(errors[0]) and "callback bug" in str(errors[0])
    assert isinstance(errors[0].__cause__, RuntimeError)
    assert ("b", True) in seen  # b's event still reached the callbacks
    for r, e in zip(got, expected):
        assert r.frame_index == e.frame_index and r.is_anomaly == e.is_anomaly
        assert (r.score is None) == (e.score is None)
        if r.score is not None:
            assert r.score == pytest.approx(e.score, rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(
        det.stream("b").state["memory"], ref.stream("default").state["memory"], rtol=1e-6, atol=1e-7
    )
    assert det.stream("a").frame_index == det.stream("b").frame_index == len(a) - 1
    with pytest.raises(CallbackError):  # closing a's event calls the raising callback once more
        det.finish()
    assert ("b", False) in seen  # and b's event was still closed and reported


def test_event_log_on_a_full_disk_raises_one_data_error_then_closes(tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    log = EventLog("/dev/full")
    e = Event("cam", 0, 1, 0.1, 3.0, 1)
    with pytest.raises(DataError, match="cannot write events to /dev/full: No space left"):
        log.write(e)
    log.write(e)  # already reported: quiet
    log.close()  # no second error, the file is released
    csvw = ScoreCSV("/dev/full", ["psnr"], flush_every=1)
    with pytest.raises(DataError, match="cannot write scores"):
        for i in range(3):
            csvw.write(FrameResult("cam", i, 0.0, score=1.0, raw_score=1.0, components={"psnr": 1.0}))
    csvw.close()


def test_a_record_cut_off_by_a_full_disk_is_removed_again(tmp_path):
    import errno

    log = EventLog(tmp_path / "ev.jsonl")
    log.write(Event("cam", 0, 1, 0.1, 3.0, 1))
    real = log._fh.write

    def half_then_full(data):  # the file system takes part of the record, then is full
        if len(data) > 10:
            return real(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    log._fh.write = half_then_full
    with pytest.raises(DataError, match="No space left"):
        log.write(Event("cam", 0, 1, 0.1, 3.0, 1, end_frame=5, end_time=0.5, reason="score"))
    log.close()
    recs = [r for r in (tmp_path / "ev.jsonl").read_text().split("\n") if r]
    assert len(recs) == 1 and (tmp_path / "ev.jsonl").read_text().endswith("\n")  # no torn line
