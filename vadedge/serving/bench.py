"""Cameras vs aggregate frames/s and p95 latency: local `Detector` vs Triton (issue 17).

`compare(bundle, cameras=(1, 4, 16), ...)` starts the bundled `tritonserver` (server.TritonServer)
with two models of the same bundle — oldest-first dynamic batching across sequences (up to
max(cameras) per call) and no batching (max_batch_size 1, one camera per call) — and, in the
same run, times:

- local: one Detector, all cameras in one `process_many` call per time step (what a single box
  does in-process); latency = the call's duration;
- triton: one `RemoteDetector` (one gRPC stream), one thread per camera submitting its frames
  pipelined (at most `max_in_flight` outstanding); latency = submit -> result.

Frames are already at the bundle's size (edge-resized), identical for both paths.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..bundle import Bundle
from ..runtime.detector import Detector
from .client import RemoteDetector
from .server import TritonServer, parse_metrics
from .triton_repo import RepoOptions, write_model_repository

logger = logging.getLogger(__name__)


@dataclass
class Row:
    path: str  # "local", "triton (batching)", "triton (direct)"
    cameras: int
    fps: float  # aggregate frames per second
    p95_ms: float
    per_call: float  # requests per model execution (Triton's exec count), 1 camera-step per call locally

    def format(self) -> str:
        return f"| {self.path} | {self.cameras} | {self.fps:.1f} | {self.p95_ms:.1f} | {self.per_call:.2f} |"


def _frames(det_h: int, det_w: int, c: int, n: int, cams: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (cams, n, det_h, det_w, c), dtype=np.uint8)


def run_local(bundle: Union[str, Path, Bundle], frames: np.ndarray, threads: int) -> Row:
    det = Detector.load(bundle, backend="onnxruntime", threads=threads, heatmap=False)
    cams = [det.stream(f"c{i}") for i in range(frames.shape[0])]
    lat = []
    t0 = time.perf_counter()
    for j in range(frames.shape[1]):
        t = time.perf_counter()
        det.process_many({c: frames[i, j] for i, c in enumerate(cams)})
        lat.append((time.perf_counter() - t) * 1e3)
    wall = time.perf_counter() - t0
    det.close()
    return Row(
        "local Detector",
        frames.shape[0],
        frames.size / frames[0, 0].size / wall,
        float(np.percentile(lat, 95)),
        float(frames.shape[0]),
    )


def _record(into: list[float], t0: float, _fut: object) -> None:
    into.append((time.perf_counter() - t0) * 1e3)


def run_triton(server: TritonServer, model: str, label: str, frames: np.ndarray, max_in_flight: int) -> Row:
    before = parse_metrics(server.metrics(), model)
    rd = RemoteDetector(server.grpc_url, model, max_in_flight=max_in_flight)
    lat: list[float] = []
    lock = threading.Lock()

    def camera(i: int) -> None:
        h = rd.stream(f"c{i}")
        sent: list[float] = []
        for j in range(frames.shape[1]):
            t = time.perf_counter()
            fut = h.submit(frames[i, j], float(j))
            fut.add_done_callback(functools.partial(_record, sent, t))
        h.finish()
        with lock:
            lat.extend(sent)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=camera, args=(i,)) for i in range(frames.shape[0])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    rd.close()
    after = parse_metrics(server.metrics(), model)
    count = after["nv_inference_count"] - before.get("nv_inference_count", 0)
    execs = after["nv_inference_exec_count"] - before.get("nv_inference_exec_count", 0)
    n = frames.shape[0] * frames.shape[1]
    return Row(label, frames.shape[0], n / wall, float(np.percentile(lat, 95)), count / max(execs, 1))


def compare(
    bundle: Union[str, Path],
    cameras: Sequence[int] = (1, 4, 16),
    frames_per_camera: int = 60,
    threads: int = 1,
    max_in_flight: int = 4,
    instances: Sequence[int] = (),
) -> list[Row]:
    """The rows of the table in docs/benchmarks.md (see the module docstring)."""
    from ..bundle import load_bundle

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    spec = b.input_spec
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vadedge-triton-bench-") as tmp:
        repo = Path(tmp) / "repo"
        top = max(cameras)
        write_model_repository(b, repo, RepoOptions(name="batched", max_batch_size=top, threads=threads))
        write_model_repository(b, repo, RepoOptions(name="single", max_batch_size=1, threads=threads))
        multi = [n for n in instances if n > 1]  # also: dynamic batching with n model instances
        for n in multi:
            write_model_repository(
                b, repo, RepoOptions(name=f"batched_x{n}", max_batch_size=top, threads=threads, instances=n)
            )
        with TritonServer(repo, ["batched", "single", *(f"batched_x{n}" for n in multi)]) as server:
            for k in cameras:
                fr = _frames(spec.height, spec.width, spec.channels, frames_per_camera, k)
                rows.append(run_local(b, fr, threads))
                rows.append(run_triton(server, "batched", "Triton, dynamic batching", fr, max_in_flight))
                rows.append(run_triton(server, "single", "Triton, no batching (max_batch_size 1)", fr, max_in_flight))
                for n in multi:
                    rows.append(
                        run_triton(
                            server, f"batched_x{n}", f"Triton, dynamic batching, {n} instances", fr, max_in_flight
                        )
                    )
                for r in rows[-3 - len(multi) :]:
                    logger.info("%s", r.format())
    return rows
