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
    feed = EventFeed([], tmp_path / "state", update_interval=0.5, on_message=got.append,
                     snapshots=SnapshotWriter(tmp_path / "snaps"))
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


def test_run_cli_writes_snapshots_and_names_them_in_the_event_log(tmp_path):
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from tests.fakes.bundles import make_toy_bundle
    from vadedge.cli import cli
    from vadedge.synthetic import SceneGenerator, write_video

    frames, _ = SceneGenerator(96, 128, seed=3).render(30, seed=3001, anomaly="speed", anomaly_start=10)
    write_video(tmp_path / "clip.avi", frames, fps=10)
    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9), min_event_frames=1)
    res = CliRunner().invoke(cli, ["run", str(tmp_path / "clip.avi"), "-m", str(bundle), "-q", "--camera-name",
                                   "gate", "--events", str(tmp_path / "ev.jsonl"), "--snapshots",
                                   str(tmp_path / "snaps"), "--state-dir", str(tmp_path / "state")])
    assert res.exit_code == 0, res.output
    end = [r for r in read_events(tmp_path / "ev.jsonl") if r["type"] == "end"]
    assert len(end) == 1 and end[0]["camera"] == "gate"
    assert cv2.imread(end[0]["snapshot"]).shape == (96, 128, 3)
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == [f"gate-{end[0]['seq']}-{end[0]['id']}.jpg"]
    assert json.loads((tmp_path / "state" / "event-ids.json").read_text()) == {"gate": 1}


def test_config_snapshots_key_is_resolved_and_checked(tmp_path):
    pytest.importorskip("pydantic")
    from vadedge.errors import ConfigError
    from vadedge.runconfig import validate

    doc = {"cameras": [{"name": "gate", "source": "rtsp://cam/1"}], "snapshots": "snaps"}
    assert validate(doc, base=tmp_path, where="t").snapshots == str(tmp_path / "snaps")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="snapshots"):
        validate({**doc, "snapshots": "file/snaps"}, base=tmp_path, where="t")
