"""Event snapshots (and clips): real JPEG / MP4 files on disk, paths in messages and the event log."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vadedge.delivery import EventFeed, EventMessage
from vadedge.delivery.snapshots import SnapshotWriter
from vadedge.runtime.sinks import EventLog, read_events
from vadedge.scoring import Event


def test_snapshot_is_the_peak_frame_with_heatmap_and_box_and_its_path_is_in_end_and_log(tmp_path):
    got: list[EventMessage] = []
    feed = EventFeed(
        [], tmp_path / "state", update_interval=0.5, on_message=got.append, snapshots=SnapshotWriter(tmp_path / "snaps")
    )
    log = EventLog(tmp_path / "events.jsonl", identify=feed.describe)
    heat = np.zeros((12, 16), np.float32)
    heat[3:6, 8:12] = 1.0  # box (64, 24, 96, 48) in a 96x128 frame
    grey = np.full((96, 128, 3), 128, np.uint8)
    bright = np.full((96, 128, 3), 250, np.uint8)
    start = Event("gate", 0, 5, 0.5, 2.0, 5)
    feed.event(start)
    log.write(start)
    feed.frame("gate", 6, 0.6, 2.0, heat, image=grey)  # new: snapshot of the grey frame
    feed.frame("gate", 7, 0.7, 1.0, heat, image=np.zeros_like(grey))  # lower score: not the peak
    feed.frame("gate", 12, 1.2, 3.0, heat, image=bright)  # the peak, 0.6 s later: update, new snapshot
    end = Event("gate", 0, 5, 0.5, 3.0, 12, 14, 1.4, "score")
    feed.event(end)
    log.write(end)
    feed.close()
    log.close()
    assert [m.type for m in got] == ["new", "update", "end"]
    path = got[-1].snapshot
    assert path is not None and {m.snapshot for m in got} == {path}  # one file per event, replaced
    assert path.endswith(f"gate-{got[0].seq}-{got[0].id}.jpg") and not list((tmp_path / "snaps").glob("*.tmp"))
    img = cv2.imread(path)
    assert img.shape == (96, 128, 3)
    assert img[90, 5].mean() > 235  # the bright peak frame, not the grey first one (no heat there)
    x0, y0, x1, y1 = got[-1].box
    b, g, r = (int(v) for v in img[y0 + 12, x0])  # the red box edge
    assert r > 150 and b < 120 and g < 120
    inside = img[(y0 + y1) // 2, (x0 + x1) // 2].astype(int)
    assert inside[0] < int(img[90, 5, 0]) - 80 < inside[2]  # the heat-map (JET red) colours the hot region
    recs = read_events(tmp_path / "events.jsonl")
    assert recs[0]["snapshot"] is None and recs[1]["snapshot"] == path and recs[1]["id"] == got[0].id


def test_run_cli_writes_snapshots_and_clips_and_names_them_in_the_event_log(tmp_path):
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from tests.fakes.bundles import make_toy_bundle
    from vadedge.cli import cli
    from vadedge.synthetic import SceneGenerator, write_video

    frames, _ = SceneGenerator(96, 128, seed=3).render(30, seed=3001, anomaly="speed", anomaly_start=10)
    write_video(tmp_path / "clip.avi", frames, fps=10)
    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9), min_event_frames=1)
    res = CliRunner().invoke(
        cli,
        [
            "run",
            str(tmp_path / "clip.avi"),
            "-m",
            str(bundle),
            "-q",
            "--camera-name",
            "gate",
            "--events",
            str(tmp_path / "ev.jsonl"),
            "--snapshots",
            str(tmp_path / "snaps"),
            "--clips",
            str(tmp_path / "clips"),
            "--pre-roll",
            "0.2",
            "--state-dir",
            str(tmp_path / "state"),
        ],
    )
    assert res.exit_code == 0, res.output
    end = [r for r in read_events(tmp_path / "ev.jsonl") if r["type"] == "end"]
    assert len(end) == 1 and end[0]["camera"] == "gate"
    assert cv2.imread(end[0]["snapshot"]).shape == (96, 128, 3)
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == [f"gate-{end[0]['seq']}-{end[0]['id']}.jpg"]
    assert json.loads((tmp_path / "state" / "event-ids.json").read_text()) == {"gate": 1}
    # the clip: from 0.2 s (2 frames at 10 fps) before the start to the end of the stream (no post-roll)
    first = end[0]["start_frame"] - 2
    assert first > 0
    cap = cv2.VideoCapture(end[0]["clip"])
    clip = []
    while (got := cap.read())[0]:
        clip.append(got[1])
    assert len(clip) == end[0]["end_frame"] - first + 1 == 30 - first
    src = cv2.VideoCapture(str(tmp_path / "clip.avi"))
    video = []
    while (got := src.read())[0]:
        video.append(got[1].astype(int))

    def closest(img: np.ndarray) -> int:
        return int(np.argmin([np.abs(img.astype(int) - v).mean() for v in video]))

    assert [closest(clip[0]), closest(clip[-1])] == [first, 29]  # the first clip frame is the pre-roll's first


def test_config_snapshots_and_clips_keys_are_resolved_and_checked(tmp_path):
    pytest.importorskip("pydantic")
    from vadedge.errors import ConfigError
    from vadedge.runconfig import validate

    doc = {"cameras": [{"name": "gate", "source": "rtsp://cam/1"}], "snapshots": "snaps"}
    assert validate(doc, base=tmp_path, where="t").snapshots == str(tmp_path / "snaps")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="snapshots"):
        validate({**doc, "snapshots": "file/snaps"}, base=tmp_path, where="t")
    cfg = validate({**doc, "clips": "clips", "pre_roll": 2, "post_roll": 0}, base=tmp_path, where="t")
    assert (cfg.clips, cfg.pre_roll, cfg.post_roll) == (str(tmp_path / "clips"), 2.0, 0.0)
    with pytest.raises(ConfigError, match="pre_roll"):
        validate({**doc, "pre_roll": -1}, base=tmp_path, where="t")


def _level_frame(i: int) -> np.ndarray:
    return np.full((64, 96, 3), 8 + 8 * (i % 30), np.uint8)  # i % 30 is readable from the brightness


def _read_levels(path: str) -> list[int]:
    cap = cv2.VideoCapture(path)
    levels = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        levels.append(round((float(img.mean()) - 8) / 8))
    cap.release()
    return levels


def test_clip_covers_pre_roll_to_post_roll_and_is_written_in_the_background(tmp_path):
    from vadedge.delivery.clips import ClipRecorder

    got: list[EventMessage] = []
    clips = ClipRecorder(tmp_path / "clips", pre_roll=1.0, post_roll=0.5)
    feed = EventFeed([], tmp_path / "state", on_message=got.append, clips=clips)
    heat = np.zeros((8, 12), np.float32)
    for i in range(60):  # 10 fps; an event from frame 30 (t 3.0), confirmed at 32, ended at 40 (t 4.0)
        t = i / 10
        if i == 32:
            feed.event(Event("gate", 0, 30, 3.0, 2.0, 31))
        if i == 40:
            feed.event(Event("gate", 0, 30, 3.0, 2.0, 31, 40, 4.0, "score"))
        feed.frame("gate", i, t, 2.0 if 32 <= i < 40 else 0.0, heat, image=_level_frame(i))
    end = got[-1]
    assert end.type == "end" and end.clip == str(tmp_path / "clips" / f"gate-{end.seq}-{end.id}.mp4")
    feed.close()  # waits for the writer thread
    # t 2.0 (start - pre-roll) .. 4.5 (end + post-roll): frames 20..45, in order, none twice
    assert _read_levels(end.clip) == [i % 30 for i in range(20, 46)]
    cap = cv2.VideoCapture(end.clip)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 10) < 0.5  # the rate measured from the timestamps
    cap.release()
    assert clips.finished == [end.clip] and not list((tmp_path / "clips").glob("*.part.mp4"))


def test_clip_of_an_event_ended_by_the_stream_end_is_finished_at_once(tmp_path):
    from vadedge.delivery.clips import ClipRecorder

    clips = ClipRecorder(tmp_path / "clips", pre_roll=0.5, post_roll=5.0)
    feed = EventFeed([], tmp_path / "state", clips=clips)
    for i in range(10):
        if i == 6:
            feed.event(Event("cam", 0, 6, 0.6, 2.0, 6))
        feed.frame("cam", i, i / 10, 1.0, None, image=_level_frame(i))
    feed.event(Event("cam", 0, 6, 0.6, 2.0, 6, 9, 0.9, "stream_end"))
    feed.close()
    (path,) = clips.finished
    assert _read_levels(path) == list(range(1, 10))  # t 0.1 (0.6 - pre-roll) on; no post-roll wait
