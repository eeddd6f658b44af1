"""Sinks: durable event log, per-frame CSV, annotated video, score plot."""

from __future__ import annotations

import csv
import os

import cv2
import numpy as np
import pytest

from vadedge.runtime.plot import plot_scores
from vadedge.runtime.results import Event, FrameResult
from vadedge.runtime.sinks import AnnotatedVideo, EventLog, ScoreCSV, draw_overlay, read_events


def test_event_log_fsyncs_every_record(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    log = EventLog(tmp_path / "sub" / "events.jsonl", extra={"source": "cam0"})
    e = Event("cam0", 0, 10, 1.0, 4.2, 12)
    log.write(e)
    assert len(synced) == 1
    # readable by another reader before close: the record is on disk
    assert read_events(tmp_path / "sub" / "events.jsonl")[0]["type"] == "start"
    log.write(Event("cam0", 0, 10, 1.0, 4.2, 12, end_frame=20, end_time=2.0, reason="score"))
    assert len(synced) == 2
    log.close()
    recs = read_events(tmp_path / "sub" / "events.jsonl")
    assert [r["type"] for r in recs] == ["start", "end"]
    assert recs[1]["frames"] == 11 and recs[1]["source"] == "cam0" and recs[1]["peak_score"] == 4.2


def test_event_log_appends_repairs_a_torn_line_and_numbers_on_across_restarts(tmp_path):
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.write(Event("gate", 0, 10, 1.0, 4.2, 12))
    log.write(Event("gate", 0, 10, 1.0, 4.2, 12, end_frame=20, end_time=2.0, reason="score"))
    log.write(Event("yard", 0, 3, 0.3, 3.0, 3))
    log.close()
    with path.open("ab") as fh:
        fh.write(b'{"type": "start", "camera": "gate", "seq": 9')  # a kill in the middle of a record
    log = EventLog(path)  # a restart: detector event numbers start at 0 again
    log.write(Event("gate", 0, 50, 5.0, 3.5, 50))
    log.write(Event("yard", 0, 3, 0.3, 3.0, 3, end_frame=9, end_time=0.9, reason="interrupted"))
    log.close()
    assert path.read_text().endswith("\n")
    recs = read_events(path)  # the torn line is gone, every earlier record kept
    assert [(r["type"], r["camera"], r["seq"], r["event"]) for r in recs] == [
        ("start", "gate", 0, 0),
        ("end", "gate", 0, 0),
        ("start", "yard", 0, 0),
        ("start", "gate", 1, 0),
        ("end", "yard", 1, 0),
    ]  # yard's end without its start: a new number
    assert recs[0]["id"] == recs[1]["id"] and len({r["id"] for r in recs}) == 4
    assert all(len(r["id"]) == 32 and r["stream"] == r["camera"] for r in recs)
    assert recs[1]["start_frame"] == 10 and recs[1]["end_frame"] == 20 and recs[1]["frames"] == 11


def test_event_log_takes_ids_from_the_feed(tmp_path):
    from vadedge.delivery import EventFeed, build_sink

    feed = EventFeed([build_sink("jsonl", {"path": str(tmp_path / "msgs.jsonl")})], tmp_path / "state")
    log = EventLog(tmp_path / "events.jsonl", identify=feed.describe)
    for e in (
        Event("gate", 0, 10, 1.0, 4.2, 12),
        Event("gate", 0, 10, 1.0, 4.2, 12, end_frame=20, end_time=2.0, reason="score"),
    ):
        feed.event(e)
        log.write(e)
    feed.close()
    log.close()
    msgs, recs = read_events(tmp_path / "msgs.jsonl"), read_events(tmp_path / "events.jsonl")
    assert {(m["id"], m["seq"]) for m in msgs} == {(r["id"], r["seq"]) for r in recs} and len(recs) == 2


def test_score_csv_rows(tmp_path):
    w = ScoreCSV(tmp_path / "s.csv", ["psnr", "fd"], flush_every=1)
    w.write(FrameResult("a", 0, 0.0, warmup=True))
    w.write(
        FrameResult(
            "a",
            1,
            0.04,
            score=1.5,
            raw_score=2.0,
            components={"psnr": 30.0, "fd": 0.1},
            is_anomaly=True,
            latency_ms=3.0,
        )
    )
    w.close()
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert rows[0]["warmup"] == "1" and rows[0]["score"] == ""
    assert rows[1]["is_anomaly"] == "1" and float(rows[1]["psnr"]) == 30.0 and float(rows[1]["score"]) == 1.5


def test_annotated_video_has_overlay_and_strip(tmp_path):
    v = AnnotatedVideo(tmp_path / "out.avi", fps=10, threshold=1.0, strip_height=40)
    frame = np.full((60, 80, 3), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[2:4, 2:4] = 1.0
    for i in range(6):
        r = (
            FrameResult("a", i, i / 10, warmup=i < 2)
            if i < 2
            else FrameResult("a", i, i / 10, score=float(i), components={}, is_anomaly=i > 3, heatmap=heat)
        )
        out = v.write(frame, r)
    v.close()
    assert out.shape == (100, 80, 3)
    cap = cv2.VideoCapture(str(tmp_path / "out.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 6
    plain = draw_overlay(frame, None, None, [], None, strip_height=40)
    assert plain.shape == (100, 80, 3) and np.array_equal(plain[:60], frame)


def test_plot_scores_png(tmp_path):
    ev = Event("a", 0, 5, 0.5, 3.0, 6, end_frame=8, end_time=0.8)
    p = plot_scores(
        tmp_path / "p.png",
        list(range(20)),
        [None] * 4 + [float(i % 5) for i in range(16)],
        threshold=2.0,
        labels=np.r_[np.zeros(5), np.ones(5), np.zeros(10)],
        events=[ev],
        title="t",
    )
    img = cv2.imread(str(p))
    assert img is not None and img.shape[0] > 100


def test_unwritable_paths_are_user_errors(tmp_path):
    from vadedge.errors import DataError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="cannot write events"):
        EventLog(blocker / "events.jsonl")
