"""Timing loops of `vadedge bench`: model-only calls, the end-to-end pipeline, stream batching, memory.

* model-only: `Detector.runner.step` (one backend call) on preprocessed clips of one stream, state carried, batch 1;
  one sample per call (wall clock).
* end-to-end: the `vadedge run` loop (`run_source`) on a video file: decode (its own thread) +
  preprocess + ring buffer + inference + causal scoring; FPS counts scored frames only (the first
  clip_length − 1 frames are warm-up and would flatter the rate).
* streams: `Detector.process_many` with S streams (raw frames in, so preprocessing is included).
* resident memory: a fresh interpreter per backend (`python -m vadedge.bench.rss`), so rows do not
  share (or inherit) each other's allocations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import DataError
from ..preprocess import prepare_frame

if TYPE_CHECKING:
    from ..preprocess import InputSpec
    from ..runtime import Detector
    from ..runtime.runner import StreamRunner


def synthetic_frames(count: int, height: int = 240, width: int = 360, seed: int = 0) -> list[np.ndarray]:
    """`count` BGR frames of the synthetic walkway scene (Ped2's frame size by default)."""
    from ..synthetic import SceneGenerator

    return list(SceneGenerator(height, width, seed=seed).render(count, seed=seed)[0])


def load_frames(data: Optional[Path], count: int) -> tuple[list[np.ndarray], str]:
    """Up to `count` BGR frames from a video file, a frames folder or a dataset root (its first test
    video), repeated (forward then backward) if the footage is shorter; synthetic frames without data."""
    if data is None:
        return synthetic_frames(count), f"synthetic walkway, {count} frames of 240x360"
    from ..datasets import open_split
    from ..runtime.sources import open_source

    path = Path(data)
    if not path.exists():
        raise DataError(f"--data {path} does not exist")
    label = str(path)
    if path.is_dir() and (path / "testing").is_dir():
        video = open_split(path, "testing").videos[0]
        path, label = Path(video.source), f"{path} testing/{video.name}"
    frames: list[np.ndarray] = []
    with open_source(path) as src:
        for f in src:
            frames.append(f.image)
            if len(frames) >= count:
                break
    if not frames:
        raise DataError(f"--data {data} gave no frames")
    base = frames[:]
    while len(frames) < count:  # ping-pong keeps motion continuous
        base = base[::-1]
        frames.extend(base[: count - len(frames)])
    h, w = frames[0].shape[:2]
    return frames, f"{label}, {count} frames of {h}x{w}"


def write_video(frames: Sequence[np.ndarray], path: Path, fps: float = 25.0) -> Path:
    """An mp4 (mp4v) file of the frames: what `vadedge run clip.mp4` decodes in the end-to-end rows."""
    import cv2

    path = Path(path)
    if path.is_file():
        return path
    h, w = frames[0].shape[:2]
    tmp = path.with_suffix(".tmp.mp4")
    vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise DataError(f"OpenCV cannot write {path}")
    for f in frames:
        vw.write(f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    vw.release()
    os.replace(tmp, path)
    return path


def clips_of(frames: Sequence[np.ndarray], spec: InputSpec, clip_length: int) -> np.ndarray:
    """Preprocessed sliding clips uint8 [T − N + 1, N, H, W, C] (views into one array)."""
    pre = np.stack([prepare_frame(f, spec) for f in frames])
    n = clip_length
    idx = np.arange(len(pre) - n + 1)[:, None] + np.arange(n)[None]
    return pre[idx]


class ModelOnly:
    """Model-only calls of a `StreamRunner` (a Detector's `runner`) on one stream's clips (batch 1), state carried."""

    def __init__(self, runner: StreamRunner) -> None:
        self.runner = runner
        self.state = self.runner.batched_state(1)
        self.params = self.runner.call_params(1)

    def call(self, clip: np.ndarray) -> float:
        """Seconds of one model call on `clip` (N, H, W, C)."""
        x = np.ascontiguousarray(clip[None])
        side = self.runner.clip_side_inputs(x)  # host side inputs (optical flow) stay out of the model time
        t0 = time.perf_counter()
        out = self.runner.step(x, self.state, self.params, side)
        dt = time.perf_counter() - t0
        self.state = out.state or self.state
        return dt


def model_only(det: Detector, clips: np.ndarray) -> list[float]:
    """Seconds of each backend call on the clips of one stream, state carried (batch 1)."""
    runner = ModelOnly(det.runner)
    return [runner.call(c) for c in clips]


def model_only_interleaved(
    dets: Mapping[str, Detector], clips: np.ndarray, block: int = 25, settle: float = 0.2
) -> dict[str, list[float]]:
    """Every Detector in turn on the same clips, `block` calls at a time, so background load hits all rows
    alike. Blocks, and an untimed `settle` pause before each, because thread pools (ONNX Runtime's, torch's
    OpenMP, the BLAS of the SGEMM) spin for a while after a call, and a call of another session started right
    then competes with them (docs/benchmarks.md: two ORT sessions alternating call by call ran 2.2x slower)."""
    runners = {k: ModelOnly(d.runner) for k, d in dets.items()}
    times: dict[str, list[float]] = {k: [] for k in dets}
    for start in range(0, len(clips), block):
        for k, r in runners.items():
            if settle:
                time.sleep(settle)
            times[k].extend(r.call(c) for c in clips[start : start + block])
    return times


def import_seconds(repeats: int = 3) -> float:
    """Best wall time of `import vadedge` in a fresh interpreter (`repeats` tries)."""
    code = "import time; t = time.perf_counter(); import vadedge; print(time.perf_counter() - t)"
    best = float("inf")
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        if out.returncode == 0:
            best = min(best, float(out.stdout.strip().splitlines()[-1]))
    return best


def end_to_end(det: Detector, video: Path) -> dict:
    """One `run_source` pass over the video file on a fresh stream: seconds, frames, scored frames."""
    from ..runtime.pipeline import run_source
    from ..runtime.sources import open_source

    det.reset()
    summary = run_source(det, open_source(video), progress=False)
    return {"seconds": summary.seconds, "frames": summary.frames, "scored": summary.scored}


def streams_pass(det: Detector, frames: Sequence[np.ndarray], streams: int, steps: int, batched: bool = True) -> float:
    """Frames per second (all streams together) of `streams` cameras after warm-up: one `process_many` call
    per step (batched), or one `process` call per stream and step. Stream i starts i·7 frames into `frames`."""
    det.reset()
    hs = [det.stream(f"bench{i}") for i in range(streams)]
    n = len(frames)
    warm = det.clip_length - 1
    for t in range(warm):
        det.process_many({h: frames[(t + 7 * i) % n] for i, h in enumerate(hs)})
    t0 = time.perf_counter()
    for t in range(warm, warm + steps):
        if batched:
            det.process_many({h: frames[(t + 7 * i) % n] for i, h in enumerate(hs)})
        else:
            for i, h in enumerate(hs):
                h.process(frames[(t + 7 * i) % n])
    seconds = time.perf_counter() - t0
    for h in hs:
        det.remove_stream(h)
    return streams * steps / seconds


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; else peak RSS from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def measure_rss(
    model: Path,
    backend: str,
    precision: Optional[str],
    frames: int,
    threads: Optional[int],
    sample_every: int = 0,
    timeout: float = 900.0,
) -> dict:
    """Run `python -m vadedge.bench.rss` in a fresh interpreter and return its JSON report."""
    cmd = [sys.executable, "-m", "vadedge.bench.rss", str(model), "--backend", backend, "--frames", str(frames)]
    if precision:
        cmd += ["--precision", precision]
    if threads:
        cmd += ["--threads", str(threads)]
    if sample_every:
        cmd += ["--sample-every", str(sample_every)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])
