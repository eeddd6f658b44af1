"""Real loopback receivers for the delivery tests: an HTTP webhook receiver and a mosquitto broker
with a paho subscriber. Everything binds 127.0.0.1 and is stopped by the test that started it."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `cond` until true; fail with `what` after `timeout` s (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def check_in_order(received: list[dict], expected: list[dict], *, others: bool = False) -> None:
    """Every expected message arrived (at least once, same id and type), in order per camera.

    `others=True` lets `received` also hold messages not in `expected` (one caught by a SIGKILL
    can reach a sink without reaching the JSON-lines file); they are ignored in the order check.
    """
    seen: dict[str, dict] = {}
    for m in received:
        seen.setdefault(m["message_id"], m)
    assert [m["message_id"] for m in expected if m["message_id"] not in seen] == []
    for cam in {m["camera"] for m in expected}:
        want = [m["message_id"] for m in expected if m["camera"] == cam]
        order = list(dict.fromkeys(m["message_id"] for m in received if m["camera"] == cam))
        if others:
            order = [i for i in order if i in set(want)]
        assert order == want, cam
    for m in expected:
        assert seen[m["message_id"]]["id"] == m["id"] and seen[m["message_id"]]["type"] == m["type"]


class Receiver:
    """A webhook receiver on 127.0.0.1:port that records every JSON body (in arrival order)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict] = []
        self._server: Optional[ThreadingHTTPServer] = None

    def start(self) -> Receiver:
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers["Content-Length"]))
                bodies.append(json.loads(data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Broker:
    """Debian's mosquitto on 127.0.0.1:port (persistent sessions), started and stopped by the test."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.folder = port, folder
        self.conf = folder / "mosquitto.conf"
        # persistence: the subscriber's session (clean_session=False) and its queued QoS 1 messages
        # survive a broker restart, as on a production broker
        # user: as root, mosquitto would switch to the "mosquitto" user, who cannot write the test's folder
        self.conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"user {getpass.getuser()}\n"
            f"persistence_location {folder}/\nautosave_interval 1\n"
        )
        self._proc: Optional[subprocess.Popen] = None

    def start(self) -> Broker:
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None


class Subscriber:
    """A real paho client subscribed to `<prefix>/#`, recording (topic, payload, retain)."""

    def __init__(self, port: int, prefix: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}", clean_session=False)
        self._client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        self._client.connect_async("127.0.0.1", port, keepalive=10)
        self._client.loop_start()

    def _on_message(self, _c, _u, msg) -> None:  # noqa: ANN001
        with self._lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
