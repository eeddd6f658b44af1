"""issue 17: a real `tritonserver` (bundled in nvidia-pytriton) serving `vadedge triton-repo`'s
Python-backend model to `RemoteDetector`: 8 cameras match the local Detector, no state leaks
between sequences, a server restart is recovered from, Triton's metrics are scraped.

Skipped where nvidia-pytriton / tritonclient are absent, or where this environment has NumPy 2
and no NumPy < 2 for the server's stub ($VADEDGE_TRITON_STUB_PATH, see docs/deployment.md).
The server binds 127.0.0.1 on free ports and is stopped by the fixtures.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.errors import ConfigError  # noqa: E402
from vadedge.runtime.detector import Detector  # noqa: E402
from vadedge.serving import server as srv_mod  # noqa: E402
from vadedge.serving.client import RESTART_REASON, RemoteDetector  # noqa: E402
from vadedge.serving.triton_repo import RepoOptions, write_model_repository  # noqa: E402

logger = logging.getLogger(__name__)
TOL = 1e-4
ALWAYS_ON = (-1e6, -1e6)  # an event opens on the first scored frame and stays open

if srv_mod.pytriton_root() is None:
    pytest.skip("nvidia-pytriton (tritonserver) is not installed", allow_module_level=True)
try:
    srv_mod.check_stub_numpy(srv_mod.stub_python_path())
except ConfigError as exc:
    pytest.skip(str(exc), allow_module_level=True)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    return {
        "vad": make_toy_bundle(root / "vad", batch="dynamic", color="bgr", height=32, width=48),
        "vad_ev": make_toy_bundle(root / "vad_ev", batch="dynamic", threshold=ALWAYS_ON, min_event_frames=2),
    }


@pytest.fixture(scope="module")
def repo(bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("repo")
    for name, b in bundles.items():
        write_model_repository(b, out, RepoOptions(name=name, max_batch_size=8, idle_us=60_000_000))
    write_model_repository(bundles["vad"], out, RepoOptions(name="vad_idle", max_batch_size=8, idle_us=500_000))
    write_model_repository(bundles["vad"], out, RepoOptions(name="vad_x2", max_batch_size=8, instances=2))
    return out


@pytest.fixture(scope="module")
def server(repo):
    s = srv_mod.TritonServer(repo, ["vad", "vad_ev", "vad_idle", "vad_x2"])
    s.start()
    yield s
    s.close()


def scenes(n_cams: int, n_frames: int, seed: int = 0) -> np.ndarray:
    """Per camera a different scene: a moving bright square over a camera-specific noisy background
    (frames at 64x96 BGR, resized to the bundle's input on the client as on the edge)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_cams, n_frames, 64, 96, 3), np.uint8)
    for c in range(n_cams):
        bg = rng.integers(0, 120, (64, 96, 3), dtype=np.uint8)
        for t in range(n_frames):
            f = bg.copy()
            x = (5 * t + 11 * c) % 80
            f[20:36, x : x + 16] = 200 + c * 5
            out[c, t] = f
    return out


def local_results(bundle, frames, start: int = 0):
    """A fresh local Detector per camera (nothing to leak), fed frames[start:]."""
    det = Detector.load(bundle, backend="onnxruntime", heatmap=False)
    return [det.process(f, float(start + j)) for j, f in enumerate(frames[start:])]


def assert_same(remote, local):
    assert len(remote) == len(local)
    for r, lo in zip(remote, local):
        assert r.warmup == lo.warmup, (r.stream, r.frame_index)
        if lo.warmup:
            continue
        assert abs(r.score - lo.score) <= TOL and abs(r.raw_score - lo.raw_score) <= TOL
        assert r.components.keys() == lo.components.keys()
        assert max(abs(r.components[k] - lo.components[k]) for k in lo.components) <= TOL
        assert r.is_anomaly == lo.is_anomaly


@pytest.mark.parametrize("model", ["vad", "vad_x2"])  # vad_x2: two model instances (processes)
def test_eight_cameras_concurrently_match_the_local_detector(server, bundles, model):
    frames = scenes(8, 24)
    before = srv_mod.parse_metrics(server.metrics(), model)
    with RemoteDetector(server.grpc_url, model) as rd:
        cams = [rd.stream(f"cam{i}") for i in range(8)]

        def run(i):  # each camera in its own thread, pipelined submits
            futs = [cams[i].submit(f, float(j)) for j, f in enumerate(frames[i])]
            return [rd._wait(f) for f in futs]

        with ThreadPoolExecutor(8) as ex:
            remote = list(ex.map(run, range(8)))
    for i in range(8):
        assert [r.frame_index for r in remote[i]] == list(range(24))
        assert_same(remote[i], local_results(bundles["vad"], frames[i]))
    assert {round(remote[i][-1].score, 3) for i in range(8)}.__len__() > 1  # the scenes really differ
    after = srv_mod.parse_metrics(server.metrics(), model)
    count = after["nv_inference_count"] - before.get("nv_inference_count", 0)
    execs = after["nv_inference_exec_count"] - before.get("nv_inference_exec_count", 0)
    assert count == 8 * 24 + 8 and 0 < execs <= count  # + one END per camera (close)
    for key in ("nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"):
        assert after[key] > 0
    logger.info("triton metrics after 8 cameras: %s (%.2f requests per model call)", after, count / execs)
    print(
        f"\ntriton metrics: inference_count={count:.0f} exec_count={execs:.0f} "
        f"queue_us={after['nv_inference_queue_duration_us']:.0f} "
        f"compute_infer_us={after['nv_inference_compute_infer_duration_us']:.0f}"
    )


def test_interleaved_cameras_on_different_scenes_do_not_leak_state(server, bundles):
    frames = scenes(2, 20, seed=5)
    frames[1] = 255 - frames[1]  # a very different scene
    with RemoteDetector(server.grpc_url, "vad") as rd:
        a, b = rd.stream("a"), rd.stream("b")
        ra, rb = [], []
        for j in range(20):  # strictly interleaved, one frame each
            ra.append(a.process(frames[0, j], float(j)))
            rb.append(b.process(frames[1, j], float(j)))
    assert_same(ra, local_results(bundles["vad"], frames[0]))
    assert_same(rb, local_results(bundles["vad"], frames[1]))
    assert abs(ra[-1].raw_score - rb[-1].raw_score) > 10 * TOL


def test_server_restart_mid_run_is_recovered_and_marked(repo, bundles):
    frames = scenes(2, 30, seed=9)
    first = srv_mod.TritonServer(repo, ["vad_ev"])
    first.start()
    ports = dict(http_port=first.http_port, grpc_port=first.grpc_port, metrics_port=first.metrics_port)
    second = None
    events = []
    try:
        rd = RemoteDetector(first.grpc_url, "vad_ev", reconnect_timeout=120)
        rd.on_event(events.append)
        cams = [rd.stream("x"), rd.stream("y")]
        before = [[c.process(frames[i, j], float(j)) for j in range(12)] for i, c in enumerate(cams)]
        assert all(c.open_event is not None for c in cams)  # ALWAYS_ON: an event is open
        first.stop()
        second = srv_mod.TritonServer(repo, ["vad_ev"], **ports)
        second.start()
        after = [[c.process(frames[i, j], float(j)) for j in range(12, 30)] for i, c in enumerate(cams)]
        rd.close()
    finally:
        first.close()
        if second is not None:
            second.close()
    for i, c in enumerate(cams):
        assert c.restarts == 1 and rd.reconnects >= 1
        assert_same(before[i], local_results(bundles["vad_ev"], frames[i])[:12])
        start = c.sequence_start
        assert 12 <= start <= 12 + rd.max_in_flight  # resent frames start the new sequence
        tail = [r for r in after[i] if r.frame_index >= start]
        assert [r.frame_index for r in after[i]] == list(range(12, 30))
        # the new sequence starts cold: warm-up again, then equal to a fresh local stream
        assert_same(tail, local_results(bundles["vad_ev"], frames[i], start=start))
        assert tail[0].warmup
        closed = [e for e in events if e.stream == c.name and e.reason == RESTART_REASON]
        assert len(closed) == 1 and closed[0].end_frame == 11
        assert after[i][0].event_ended is closed[0]
        reopened = [r.event_started for r in after[i] if r.event_started is not None]
        assert reopened and reopened[0].id > closed[0].id and reopened[0].start_frame >= start


def test_vadedge_run_with_server_scores_a_source_remotely(server, tmp_path):
    import json

    import cv2
    from click.testing import CliRunner

    from vadedge.cli import cli

    src = tmp_path / "frames"
    src.mkdir()
    for j, f in enumerate(scenes(1, 12, seed=3)[0]):
        cv2.imwrite(str(src / f"{j:04d}.png"), f)
    events = tmp_path / "events.jsonl"
    r = CliRunner().invoke(
        cli,
        [
            "run",
            str(src),
            "--server",
            server.grpc_url,
            "--model",
            "vad_ev",
            "--events",
            str(events),
            "--all-frames",
            "-q",
        ],
    )
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert lines and lines[-1]["reason"] == "stream_end"  # ALWAYS_ON: one event, closed at the end
    bad = CliRunner().invoke(cli, ["run", str(src), "--server", "grpc://127.0.0.1:1", "--model", "vad"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_a_sequence_the_server_dropped_as_idle_restarts_cold(server, bundles):
    """Triton frees an idle sequence's slot (max_sequence_idle_microseconds) and the model forgets
    its state; the client's next frame is refused, so it starts a new sequence: warm-up again,
    then equal to a fresh local stream — never a score computed without the lost state."""
    import time

    frames = scenes(1, 20, seed=11)[0]
    with RemoteDetector(server.grpc_url, "vad_idle") as rd:
        cam = rd.stream("idle")
        first = [cam.process(frames[j], float(j)) for j in range(8)]
        time.sleep(2.5)  # > 0.5 s idle limit (Triton checks it periodically)
        rest = [cam.process(frames[j], float(j)) for j in range(8, 20)]
    assert_same(first, local_results(bundles["vad"], frames)[:8])
    assert cam.restarts == 1 and cam.sequence_start == 8
    assert [r.frame_index for r in rest] == list(range(8, 20))
    assert_same(rest, local_results(bundles["vad"], frames, start=8))


def test_a_multi_camera_config_on_the_server_equals_the_local_detector(server, bundles, tmp_path, monkeypatch):
    """`vadedge run --config` with `server:` per camera: three cameras share one RemoteDetector
    (one sequence each, batched steps) and score exactly like a local Detector per camera."""
    import cv2

    from vadedge.runconfig import load_config
    from vadedge.runtime import cameras as cams_mod

    frames = scenes(3, 14, seed=21)
    for i in range(3):
        (tmp_path / f"c{i}").mkdir()
        for j, f in enumerate(frames[i]):
            cv2.imwrite(str(tmp_path / f"c{i}" / f"{j:04d}.png"), f)
    (tmp_path / "cams.yaml").write_text(
        "cameras:\n"
        + "".join(
            f"  - {{name: cam{i}, source: c{i}, server: '{server.grpc_url}', bundle: vad, all_frames: true}}\n"
            for i in range(3)
        )
    )
    got: dict[str, list] = {}
    record = cams_mod._record
    monkeypatch.setattr(
        cams_mod, "_record", lambda cam, r, *a: (got.setdefault(cam.name, []).append(r), record(cam, r, *a))
    )
    summary = cams_mod.run_cameras(load_config(tmp_path / "cams.yaml"))
    assert len(summary.models) == 1 and summary.models[0][1] == ["cam0", "cam1", "cam2"]  # one shared client
    for i in range(3):
        res = got[f"cam{i}"]
        assert [r.frame_index for r in res] == list(range(14))
        det = Detector.load(bundles["vad"], backend="onnxruntime", heatmap=False)
        assert_same(res, [det.process(f, r.timestamp) for f, r in zip(frames[i], res)])
        assert sum(not r.warmup for r in res) > 0


def _continue_sequence(server, corrid: int, frame) -> None:
    """A raw request continuing sequence `corrid` (no START): Triton refuses it once the sequence ended."""
    import tritonclient.grpc as g

    c = g.InferenceServerClient(server.grpc_url.split("://")[1])
    try:
        fi = g.InferInput("FRAME", [1, *frame.shape], "UINT8")
        fi.set_data_from_numpy(frame[None])
        ts = g.InferInput("TIMESTAMP", [1, 1], "FP64")
        ts.set_data_from_numpy(np.array([[99.0]]))
        c.infer("vad", [fi, ts], sequence_id=corrid, sequence_start=False)
    finally:
        c.close()


def test_the_client_ends_its_sequences_so_the_server_drops_them(server, bundles):
    """remove_stream / close send END: the server frees the sequence at once (a request continuing it
    is refused) instead of keeping its state until the idle timeout (60 s for "vad")."""
    from vadedge.serving.client import edge_frame

    frames = scenes(2, 6, seed=13)
    with RemoteDetector(server.grpc_url, "vad") as rd:
        kept, gone = rd.stream("kept"), rd.stream("gone")
        for j in range(6):
            rd.process_many({kept: frames[0, j], gone: frames[1, j]}, {kept: float(j), gone: float(j)})
        small = edge_frame(frames[0, 0], rd.height, rd.width, rd.channels)
        kept_id, gone_id = kept.corrid, gone.corrid
        rd.remove_stream(gone)
        assert "gone" not in rd.streams
        _continue_sequence(server, kept_id, small)  # not ended: accepted
        with pytest.raises(Exception, match="START"):
            _continue_sequence(server, gone_id, small)
        after = kept.process(frames[0, 0], 6.0)  # the other stream goes on warm (the raw frame 99 included)
        assert not after.warmup and kept.restarts == 0
    with pytest.raises(Exception, match="START"):  # close() ended "kept" too
        _continue_sequence(server, kept_id, small)
