"""Issue 16 end to end: `vadedge run --config` as a subprocess, two cameras, sinks jsonl + webhook +
MQTT against a real HTTP receiver and a real mosquitto broker with a real paho subscriber.

1. Every event reaches the webhook and MQTT once per type (new / end), with the camera name, the
   event id, the box, and (on end) the snapshot and clip paths — the same messages as the JSON lines.
2. Nothing lost: the receiver and the broker go down mid-run, `vadedge run` is SIGKILLed while they
   are down and restarted with the same state dir, then they come back: each sink has received
   every JSON-lines message at least once with the same message id, in order per camera, and the
   JSON-lines file has no torn line. (At least once, not exactly once: a message delivered just
   before the kill may be delivered again by the restarted process.)

The kill is made deterministic by progress, not by time: the videos are long (1600 frames per
camera), the test kills once the JSON lines show events written while the receivers were down, and
it asserts that the process was still running (exit by SIGKILL, not a normal end).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.delivery_helpers import (
    MOSQUITTO,
    Broker,
    Receiver,
    Subscriber,
    check_in_order,
    free_port,
    wait_for,
)

pytest.importorskip("onnx")
pytest.importorskip("pydantic")
pytest.importorskip("yaml")
pytest.importorskip("paho.mqtt")
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto broker (apt-get install mosquitto)")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.synthetic import SceneGenerator, write_video  # noqa: E402

H, W = 64, 96
SEGMENT = 40  # one rendered scene; each join of two copies raises one short event (score ~ -13)
VADEDGE = [sys.executable, "-c", "from vadedge.cli import main; main()"]
CAMERAS = ("gate", "yard")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    frames, _ = SceneGenerator(H, W, seed=1).render(SEGMENT, seed=10, anomaly="speed", anomaly_start=18)
    write_video(tmp / "short.avi", np.concatenate([frames] * 5), fps=10)
    write_video(tmp / "long.avi", np.concatenate([frames] * 40), fps=10)
    make_toy_bundle(tmp / "A", height=H, width=W, color="bgr", min_event_frames=2, batch="dynamic", seed=0)
    return tmp


def _config(folder: Path, site: Path, video: str, rx: Receiver, broker: Broker) -> Path:
    fast = "backoff_initial: 0.05, backoff_max: 0.5, drain_timeout: 20"
    cams = "".join(
        f"  - {{name: {c}, source: {site / video}, bundle: {site / 'A'}, threshold: [-15.0, -16.5]}}\n" for c in CAMERAS
    )
    (folder / "config.yaml").write_text(
        f"cameras:\n{cams}"
        "sinks:\n"
        f"  - {{kind: jsonl, path: {folder}/out/events.jsonl}}\n"
        f"  - {{kind: webhook, url: '{rx.url}', {fast}}}\n"
        f"  - {{kind: mqtt, port: {broker.port}, prefix: nvr, client_id: e2e, {fast}}}\n"
        f"state_dir: {folder}/state\n"
        f"snapshots: {folder}/out/snaps\n"
        f"clips: {folder}/out/clips\n"
        "pre_roll: 1\npost_roll: 0.5\n"
    )
    return folder / "config.yaml"


def _run(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*VADEDGE, "run", "--config", str(config), "-q"],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().decode(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # the line being written
    return out


def _strict_jsonl(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "torn last line"
    return [json.loads(line) for line in data.decode().splitlines()]  # a torn line inside fails here


@pytest.fixture
def loopback(tmp_path):
    rx = Receiver(free_port()).start()
    broker = Broker(free_port(), tmp_path).start()
    sub = Subscriber(broker.port, "nvr")
    try:
        wait_for(lambda: sub._client.is_connected(), 10, "the subscriber to connect")
        yield rx, broker, sub
    finally:
        sub.close()
        broker.stop()
        rx.stop()


def test_every_event_once_per_type_at_the_webhook_and_on_mqtt(site, tmp_path, loopback):
    rx, broker, sub = loopback
    proc = _run(_config(tmp_path, site, "short.avi", rx, broker))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    msgs = _strict_jsonl(tmp_path / "out" / "events.jsonl")
    wait_for(lambda: len(sub.on("nvr/events")) >= len(msgs), 20, "MQTT events")
    mqtt = [json.loads(p) for p in sub.on("nvr/events")]
    for cam in CAMERAS:
        mine = [m for m in msgs if m["camera"] == cam]
        ends = [m for m in mine if m["type"] == "end"]
        assert len(ends) >= 3, mine  # one event per join of the scene copies
        for kind in ("new", "end"):
            want = [m["message_id"] for m in mine if m["type"] == kind]
            assert len({m["id"] for m in mine if m["type"] == kind}) == len(want) == len(ends)
            for got in (rx.bodies, mqtt):  # once per type, in order, the same message as the JSON line
                assert [m["message_id"] for m in got if m["camera"] == cam and m["type"] == kind] == want
        for m in ends:
            assert m["box"] is not None and Path(m["snapshot"]).is_file() and Path(m["clip"]).is_file()
            for got in (rx.bodies, mqtt):
                (same,) = [g for g in got if g["message_id"] == m["message_id"]]
                assert {k: same[k] for k in ("camera", "id", "box", "snapshot", "clip")} == {
                    k: m[k] for k in ("camera", "id", "box", "snapshot", "clip")
                }
        news = [m for m in mine if m["type"] == "new"]
        assert all(m["box"] is not None for m in news)
        assert [m["id"] for m in news] == [m["id"] for m in ends]
    assert sub.on("nvr/available")[-1] == "offline"  # the clean end
    assert {p for cam in CAMERAS for p in sub.on(f"nvr/{cam}/anomaly")} == {"ON", "OFF"}


def test_nothing_lost_across_receiver_and_broker_outages_and_a_sigkill(site, tmp_path, loopback):
    rx, broker, sub = loopback
    config = _config(tmp_path, site, "long.avi", rx, broker)
    log = tmp_path / "out" / "events.jsonl"
    proc = _run(config)
    try:
        wait_for(lambda: len(rx.bodies) >= 4 and len(sub.on("nvr/events")) >= 4, 60, "the first deliveries")
        rx.stop()
        broker.stop()
        down_at = len(_jsonl(log))
        wait_for(lambda: len(_jsonl(log)) >= down_at + 8, 60, "events while the receivers are down")
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, out  # killed mid-run, not ended on its own
        before = _jsonl(log)
        assert len(rx.bodies) < len(before) and len(sub.on("nvr/events")) < len(before)  # some only spooled
        rx.start()
        broker.start()
        proc = _run(config)  # same state dir: the spool of the killed run is delivered first
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    expected = _strict_jsonl(log)
    assert len(expected) > len(before)
    assert len({m["message_id"] for m in expected}) == len(expected)
    check_in_order(rx.bodies, expected, others=True)
    wait_for(lambda: len(set(sub.on("nvr/events"))) >= len(expected), 20, "MQTT events")
    check_in_order([json.loads(p) for p in sub.on("nvr/events")], expected, others=True)
    # ids survive the restart: the second run's events are numbered after the first run's
    for cam in CAMERAS:
        seqs = [m["seq"] for m in expected if m["camera"] == cam and m["type"] == "new"]
        assert seqs == sorted(set(seqs)) and seqs[-1] >= len(seqs) - 1, cam
