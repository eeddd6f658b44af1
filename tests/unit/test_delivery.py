"""Event delivery with real components: spool, JSON lines, a real HTTP receiver, a real mosquitto
broker with a real paho subscriber, SIGKILL of a writer process, Prometheus endpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import numpy as np
import pytest

from tests.delivery_helpers import MOSQUITTO, Broker, Receiver, Subscriber, check_in_order, free_port, wait_for
from vadedge.delivery import (
    EventFeed,
    EventIds,
    EventMessage,
    JsonLinesSettings,
    JsonLinesSink,
    Spool,
    build_sink,
    peak_box,
)
from vadedge.errors import ConfigError
from vadedge.scoring import Event

FAST = {"backoff_initial": 0.05, "backoff_max": 0.3, "drain_timeout": 10.0}


def _events(camera: str, n: int, first: int = 0):
    """Detector-style (start, end) event pairs of one camera."""
    for i in range(first, first + n):
        start = Event(camera, i, 10 * i, i * 1.0, 3.0 + i, 10 * i)
        yield start, Event(camera, i, 10 * i, i * 1.0, 3.0 + i, 10 * i + 2, 10 * i + 4, i + 0.4, "score")


def _feed_events(feed: EventFeed, camera: str, n: int, first: int = 0) -> None:
    for start, end in _events(camera, n, first):
        feed.event(start)
        feed.frame(camera, start.start_frame, start.start_time, start.peak_score)
        feed.event(end)


def _jsonl(path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn last line"
    return [json.loads(line) for line in data.decode().splitlines()]


# ---------------------------------------------------------------------- spool, ids, JSON lines
def test_spool_readers_resume_after_reopen_and_cut_a_torn_line(tmp_path):
    sp = Spool(tmp_path)
    a, b = sp.reader("a"), sp.reader("b")
    for i in range(3):
        sp.put(json.dumps({"n": i}))
    a.ack(a.peek())
    sp.close()
    with open(tmp_path / "queue.jsonl", "ab") as fh:
        fh.write(b'{"n": 3')  # a write cut by a kill
    sp = Spool(tmp_path)
    a, b = sp.reader("a"), sp.reader("b")
    assert (a.pending, b.pending) == (2, 3)
    assert json.loads(a.peek())["n"] == 1 and json.loads(b.peek())["n"] == 0
    for r in (a, b):
        while (line := r.peek()) is not None:
            r.ack(line)
    assert (tmp_path / "queue.jsonl").stat().st_size == 0  # all delivered: compacted
    sp.put("{}")
    assert a.pending == b.pending == 1
    sp.close()


def test_event_ids_are_unique_and_numbers_survive_a_restart(tmp_path):
    ids = EventIds(tmp_path / "ids.json")
    first = [ids.allocate("cam1") for _ in range(3)]
    again = EventIds(tmp_path / "ids.json")
    uid, seq = again.allocate("cam1")
    assert [s for _, s in first] == [0, 1, 2] and seq == 3
    assert len({u for u, _ in first} | {uid}) == 4
    assert again.allocate("cam2")[1] == 0


def test_jsonl_appends_never_truncates_repairs_and_rotates(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_bytes(b'{"old": 1}\n{"torn": ')
    feed = EventFeed([JsonLinesSink(JsonLinesSettings(str(log), max_bytes=2000, keep=2))], tmp_path / "state")
    _feed_events(feed, "cam1", 2)
    feed.close()
    recs = _jsonl(log)
    assert recs[0] == {"old": 1} and [r["type"] for r in recs[1:]] == ["new", "end", "new", "end"]
    assert {r["camera"] for r in recs[1:]} == {"cam1"} and recs[1]["id"] == recs[2]["id"] != recs[3]["id"]
    feed = EventFeed([JsonLinesSink(JsonLinesSettings(str(log), max_bytes=2000, keep=2))], tmp_path / "state")
    _feed_events(feed, "cam1", 12, first=2)
    feed.close()
    rotated = [tmp_path / "events.jsonl.1", tmp_path / "events.jsonl.2"]
    assert all(p.exists() for p in rotated) and not (tmp_path / "events.jsonl.3").exists()
    assert all(p.stat().st_size <= 2000 for p in [log, *rotated])
    seqs = [r["seq"] for p in [*reversed(rotated), log] for r in _jsonl(p) if r.get("type") == "new"]
    assert seqs == sorted(seqs) and seqs[-1] == 13  # numbering went on across the restart


def test_feed_messages_carry_the_peak_box_and_updates():
    heat = np.zeros((12, 16), np.float32)
    heat[3:6, 8:12] = 1.0
    assert peak_box(heat, (96, 128, 3)) == (64, 24, 96, 48)
    assert peak_box(np.ones((4, 4)), (8, 8)) is None


def test_feed_new_update_end(tmp_path):
    got: list[EventMessage] = []
    feed = EventFeed([], tmp_path, update_interval=0.5, on_message=got.append)
    heat = np.zeros((8, 8), np.float32)
    heat[0:2, 0:2] = 1
    feed.event(Event("cam", 0, 5, 0.5, 2.0, 5))
    feed.frame("cam", 6, 0.6, 2.0, heat, (80, 80))
    feed.frame("cam", 7, 0.7, 2.5, heat, (80, 80))  # peak rose, but within update_interval
    feed.frame("cam", 12, 1.2, 3.0, heat, (80, 80))  # rose again, 0.6 s later: update
    feed.event(Event("cam", 0, 5, 0.5, 3.0, 12, 14, 1.4, "score"))
    assert [m.type for m in got] == ["new", "update", "end"]
    assert {m.id for m in got} == {got[0].id} and got[0].box == (0, 0, 20, 20)
    assert got[1].peak_score == 3.0 and got[2].reason == "score" and got[2].end_frame == 14
    assert len({m.message_id for m in got}) == 3
    feed.close()


def test_sinks_by_name_and_bad_settings(tmp_path):
    sink = build_sink("jsonl", {"path": str(tmp_path / "e.jsonl"), "max_bytes": 100})
    assert isinstance(sink, JsonLinesSink)
    sink.close()
    with pytest.raises(ConfigError, match="unknown setting"):
        build_sink("webhook", {"url": "http://127.0.0.1:1/x", "retries": 3})
    with pytest.raises(ConfigError, match="webhook url"):
        build_sink("webhook", {"url": "ftp://x"})
    with pytest.raises(ConfigError, match="unknown sink"):
        build_sink("kafka", {})


# ---------------------------------------------------------------------- webhook
def test_webhook_receiver_down_then_up_delivers_everything_in_order(tmp_path):
    rx = Receiver(free_port())  # not listening yet: the first messages are spooled
    log = tmp_path / "events.jsonl"
    hook = build_sink("webhook", {"url": rx.url, **FAST})
    feed = EventFeed([JsonLinesSink(JsonLinesSettings(str(log))), hook], tmp_path / "state")
    _feed_events(feed, "cam1", 2)
    _feed_events(feed, "cam2", 1)
    wait_for(lambda: hook.failures >= 2, what="failed attempts while the receiver is down")
    rx.start()
    wait_for(lambda: len(rx.bodies) >= 6, what="spooled messages after the receiver came up")
    rx.stop()  # down again mid-stream
    _feed_events(feed, "cam1", 2, first=2)
    _feed_events(feed, "cam2", 1, first=1)
    assert hook.pending > 0
    rx.start()
    feed.close()  # drains the spool
    rx.stop()
    check_in_order(rx.bodies, _jsonl(log))
    assert len(_jsonl(log)) == 12 and hook.pending == 0


def test_webhook_rejected_message_is_dropped_not_blocking(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    got = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(400 if body["type"] == "new" and body["seq"] == 0 else 200)
            self.end_headers()
            got.append(body)

        def log_message(self, *a):  # noqa: ANN002
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = build_sink("webhook", {"url": f"http://127.0.0.1:{srv.server_address[1]}/", **FAST})
    feed = EventFeed([hook], tmp_path)
    _feed_events(feed, "cam", 2)
    feed.close()
    srv.shutdown()
    srv.server_close()
    assert [(m["seq"], m["type"]) for m in got] == [(0, "new"), (0, "end"), (1, "new"), (1, "end")]
    assert hook.failures == 1 and hook.pending == 0


# ---------------------------------------------------------------------- SIGKILL of the writer
WRITER = textwrap.dedent("""
    import sys, time
    from vadedge.delivery import EventFeed, JsonLinesSettings, JsonLinesSink, build_sink
    from vadedge.scoring import Event
    state, log, url, mqtt_port, first, n = sys.argv[1:7]
    sinks = [JsonLinesSink(JsonLinesSettings(log)),
             build_sink("webhook", {"url": url, "backoff_initial": 0.05, "backoff_max": 0.3, "drain_timeout": 15})]
    if mqtt_port != "0":
        sinks.append(build_sink("mqtt", {"port": int(mqtt_port), "prefix": "vad", "client_id": "writer",
                                         "backoff_initial": 0.2, "backoff_max": 1, "drain_timeout": 15}))
    feed = EventFeed(sinks, state)
    for i in range(int(first), int(first) + int(n)):
        for cam in ("cam1", "cam2"):
            feed.event(Event(cam, i, i * 10, float(i), 3.0, i * 10))
            feed.frame(cam, i * 10, float(i), 3.0)
            feed.event(Event(cam, i, i * 10, float(i), 3.0, i * 10, i * 10 + 3, i + 0.3, "score"))
        print(i, flush=True)
        time.sleep(0.02)
    feed.close()
""")


def _writer(tmp_path, rx, mqtt_port, first, n):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "state"),
            str(tmp_path / "ev.jsonl"),
            rx.url,
            str(mqtt_port),
            str(first),
            str(n),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto broker (apt-get install mosquitto)")
def test_nothing_lost_across_receiver_broker_restarts_and_sigkill(tmp_path):
    pytest.importorskip("paho.mqtt")
    rx = Receiver(free_port()).start()
    broker = Broker(free_port(), tmp_path).start()
    sub = Subscriber(broker.port, "vad")
    try:
        wait_for(lambda: sub._client.is_connected(), 10, "the subscriber to connect")
        w = _writer(tmp_path, rx, broker.port, 0, 400)
        for _ in range(3):  # a few events go through, then both receivers go down
            w.stdout.readline()
        wait_for(lambda: len(rx.bodies) >= 2 and len(sub.on("vad/events")) >= 2, 20, "the first deliveries")
        rx.stop()
        broker.stop()
        for _ in range(5):
            w.stdout.readline()
        w.send_signal(signal.SIGKILL)  # mid-stream, receivers down: messages only in the spool
        w.wait(10)
        queue = tmp_path / "state" / "spool" / "queue.jsonl"
        offsets = [int(f.read_text()) for f in queue.parent.glob("offset-*") if not f.name.endswith(".tmp")]
        assert len(offsets) == 3 and sum(o < queue.stat().st_size for o in offsets) >= 2  # webhook, MQTT behind
        rx.start()
        broker.start()
        w = _writer(tmp_path, rx, broker.port, 1000, 3)  # the restarted process delivers the spool first
        assert w.wait(60) == 0
        expected = _jsonl(tmp_path / "ev.jsonl")
        assert len(expected) >= 4 * 8 + 12
        check_in_order(rx.bodies, expected)
        wait_for(lambda: len(set(sub.on("vad/events"))) >= len(expected), 20, "MQTT events")
        check_in_order([json.loads(p) for p in sub.on("vad/events")], expected)
        n_new = sum(m["type"] == "new" for m in expected if m["camera"] == "cam1")
        assert sub.on("vad/cam1/anomaly").count("ON") >= n_new and sub.on("vad/cam1/anomaly")[-1] == "OFF"
        assert sub.on("vad/available")[-1] == "offline"  # the clean close
        # the last will: a writer killed while the broker is up is reported 'offline' by the broker
        w = _writer(tmp_path, rx, broker.port, 2000, 400)
        w.stdout.readline()
        wait_for(lambda: sub.on("vad/available")[-1] == "online", 10, "the writer to be online")
        w.send_signal(signal.SIGKILL)
        w.wait(10)
        wait_for(lambda: sub.on("vad/available")[-1] == "offline", 10, "the last will")
    finally:
        sub.close()
        broker.stop()
        rx.stop()


# ---------------------------------------------------------------------- metrics
def test_metrics_endpoint_and_healthz():
    pytest.importorskip("prometheus_client")
    from vadedge.delivery.metrics import Metrics, parse_address

    assert parse_address("9108") == ("127.0.0.1", 9108) and parse_address("0.0.0.0:1") == ("0.0.0.0", 1)
    with pytest.raises(ConfigError):
        parse_address("localhost:http")
    m = Metrics(stale_after=60)
    host, port = m.serve("127.0.0.1", 0)
    try:
        m.camera("cam1")
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5)
        assert exc.value.code == 503  # no frame yet: the camera is down
        m.frame("cam1", scored=True, latency_ms=12.0)
        m.frame("cam1", scored=False, latency_ms=3.0)
        m.source("cam1", dropped=4, reconnects=1)
        m.source("cam1", dropped=4, reconnects=2, queued=3)
        m.event("cam1", "new")
        m.failure("webhook-x")
        m.watch_spool("webhook-x", lambda: 7)
        health = json.loads(urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5).read())
        text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    finally:
        m.close()
    assert health["status"] == "ok"
    for line in [
        'vadedge_frames_total{camera="cam1"} 2.0',
        'vadedge_frames_scored_total{camera="cam1"} 1.0',
        'vadedge_frames_dropped_total{camera="cam1"} 4.0',
        'vadedge_reconnects_total{camera="cam1"} 2.0',
        'vadedge_camera_up{camera="cam1"} 1.0',
        'vadedge_queue_depth{camera="cam1"} 3.0',
        'vadedge_events_total{camera="cam1",type="new"} 1.0',
        'vadedge_sink_delivery_failures_total{sink="webhook-x"} 1.0',
        'vadedge_spool_messages{sink="webhook-x"} 7.0',
        'vadedge_inference_latency_seconds_bucket{camera="cam1",le="0.025"} 2.0',
    ]:
        assert line in text, line


# ---------------------------------------------------------------------- vadedge run
def test_run_cli_delivers_events_to_a_webhook_with_camera_name_and_box(tmp_path):
    pytest.importorskip("onnx")
    from click.testing import CliRunner

    from tests.fakes.bundles import make_toy_bundle
    from vadedge.cli import cli
    from vadedge.synthetic import SceneGenerator, write_video

    frames, _ = SceneGenerator(96, 128, seed=3).render(60, seed=3001, anomaly="speed", anomaly_start=25)
    write_video(tmp_path / "clip.avi", frames, fps=20)
    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9), min_event_frames=1)
    rx = Receiver(free_port()).start()
    try:
        args = [
            "run",
            str(tmp_path / "clip.avi"),
            "-m",
            str(bundle),
            "--quiet",
            "--camera-name",
            "gate",
            "--webhook",
            rx.url,
            "--metrics",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path / "state"),
        ]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        res2 = CliRunner().invoke(cli, [*args[:-4], "--camera-name", "bad/name"])
        assert res2.exit_code == 2 and "camera name" in res2.output
    finally:
        rx.stop()
    types = [m["type"] for m in rx.bodies]
    assert types[0] == "new" and types[-1] == "end" and {m["camera"] for m in rx.bodies} == {"gate"}
    assert len({m["id"] for m in rx.bodies}) == 1 and rx.bodies[-1]["reason"] == "stream_end"
    box = rx.bodies[0]["box"]
    assert box is not None and 0 <= box[0] < box[2] <= 128 and 0 <= box[1] < box[3] <= 96


@pytest.mark.skipif(MOSQUITTO is None, reason="needs Debian's mosquitto broker (apt-get install mosquitto)")
def test_run_cli_with_the_broker_down_at_start_spools_then_delivers(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("paho.mqtt")
    from click.testing import CliRunner

    from tests.fakes.bundles import make_toy_bundle
    from vadedge.cli import cli
    from vadedge.synthetic import SceneGenerator, write_video

    frames, _ = SceneGenerator(64, 64, seed=1).render(20, seed=11)
    write_video(tmp_path / "clip.avi", frames, fps=20)
    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9), min_event_frames=1)
    port = free_port()
    args = [
        "run",
        str(tmp_path / "clip.avi"),
        "-m",
        str(bundle),
        "--quiet",
        "--camera-name",
        "door",
        "--mqtt",
        f"127.0.0.1:{port}/nvr",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    res = CliRunner().invoke(cli, args)  # no broker: not an error, the messages wait in the spool
    assert res.exit_code == 0, res.output
    spooled = [json.loads(line) for line in (tmp_path / "state" / "spool" / "queue.jsonl").read_text().splitlines()]
    assert [m["type"] for m in spooled] == ["new", "end"]
    broker = Broker(port, tmp_path).start()
    sub = Subscriber(port, "nvr")
    try:
        wait_for(lambda: sub._client.is_connected(), 10, "the subscriber to connect")
        res = CliRunner().invoke(cli, [*args, "--max-frames", "8"])
        assert res.exit_code == 0, res.output
        wait_for(lambda: len(sub.on("nvr/events")) >= 4, 10, "both runs' messages")
    finally:
        sub.close()
        broker.stop()
    got = [json.loads(p) for p in sub.on("nvr/events")]
    assert [m["message_id"] for m in got[:2]] == [m["message_id"] for m in spooled]  # the first run's, first
    assert [m["seq"] for m in got if m["type"] == "new"] == [0, 1] and sub.on("nvr/door/anomaly")[-1] == "OFF"


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    from vadedge.delivery import Backoff

    b = Backoff(initial=0.5, maximum=4.0, jitter=0.5)
    for attempt, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (10, 4.0), (100, 4.0)]:
        waits = [b.delay(attempt) for _ in range(200)]
        assert all(full * 0.5 <= w <= full for w in waits)
    with pytest.raises(ConfigError):
        Backoff(initial=2.0, maximum=1.0)
