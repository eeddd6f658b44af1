"""Network sources against real servers on 127.0.0.1: an HTTP video file ends like a file, a URL that
connects but yields no frames fails after bounded, logged reconnects, and Ctrl-C / SIGTERM interrupt
an open that the server never answers (exit 130 / 143)."""

from __future__ import annotations

import http.server
import signal
import socket
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.runtime import open_source  # noqa: E402
from vadedge.synthetic import write_video  # noqa: E402

VADEDGE = [sys.executable, "-c", "from vadedge.cli import main; main()"]
N = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """An HTTP server on 127.0.0.1: /clip.avi (a 40-frame video file) and /broken.mjpeg (a stream
    whose only JPEG is corrupt: FFmpeg opens it, no frame ever decodes)."""
    frames = np.random.default_rng(0).integers(0, 255, (N, 32, 32, 3), np.uint8)
    path = write_video(tmp_path_factory.mktemp("www") / "clip.avi", frames, fps=10)
    jpg = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    bodies = {"/clip.avi": path.read_bytes(), "/broken.mjpeg": jpg[:200]}
    hits: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            hits[self.path] = hits.get(self.path, 0) + 1
            body = bodies.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_toy_bundle(tmp_path_factory.mktemp("toy") / "toy", threshold=(-1e9, -1e9))


def test_an_http_video_file_is_finite_and_read_once(server):
    base, hits = server
    before = hits.get("/clip.avi", 0)
    with open_source(f"{base}/clip.avi") as src:
        assert not src.live and src.total == N
        got = [f.index for f in src]
    assert got == list(range(N)) and src.reconnects == 0 and src.dropped == 0
    assert hits["/clip.avi"] - before == 1  # no replay loop


def test_run_on_an_http_video_file_ends_like_a_file(server, bundle):
    base, _ = server
    res = subprocess.run(
        VADEDGE + ["run", f"{base}/clip.avi", "--model", str(bundle), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert f"processed {N} frames" in res.stdout and "reconnects" not in res.stdout
    assert "events: 1" in res.stdout  # one event over the file, closed at its end


def test_a_url_without_frames_fails_after_bounded_logged_reconnects(server, bundle):
    base, hits = server
    before = hits.get("/broken.mjpeg", 0)
    res = subprocess.run(
        VADEDGE + ["run", f"{base}/broken.mjpeg", "--model", str(bundle), "--quiet", "--max-reconnects", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert "could not reconnect after 2 attempts" in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.count("reconnecting in") == 2  # every attempt reported, even under --quiet
    assert hits["/broken.mjpeg"] - before <= 3  # the first open + at most 2 reconnects


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], conns
    stop.set()
    thread.join(10)
    for c in conns:
        c.close()
    sock.close()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_interrupts_opening_an_unresponsive_stream(silent_server, bundle, signal_vadedge, sig, code):
    port, conns = silent_server
    # once vadedge has connected, FFmpeg waits for an HTTP response that never comes
    rc, _, err = signal_vadedge(
        ["run", f"http://127.0.0.1:{port}/live", "--model", bundle, "--quiet"],
        ready=lambda: bool(conns),
        sig=sig,
        settle=0.2,
    )
    assert rc == code, err
    assert "interrupted while opening the source" in err and "Traceback" not in err
