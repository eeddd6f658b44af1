"""Timing helpers outside `vadedge bench`'s rows: side-by-side ONNX model latency and a median-time helper.

`compare_latency`: several ONNX models on the same inputs, interleaved (each round runs every model
once in turn, so background load hits all of them alike); the report gives median and 10th-percentile
milliseconds per call and each model's speed relative to the first. `median_time`: median wall and
process-CPU seconds of a callable (the step-time experiments of `vadedge.train.experiments`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..runtime.backends.onnxruntime import make_session


@dataclass
class Latency:
    name: str
    median_ms: float
    p10_ms: float
    cpu_ms: float  # median CPU time of the calling thread per call (threads=1: the whole computation)
    speedup: float  # vs the first model: ratio of cpu_ms when threads == 1, else of median_ms


def compare_latency(
    models: dict[str, Union[str, Path]],
    feeds: dict[str, np.ndarray],
    *,
    rounds: int = 50,
    warmup: int = 5,
    threads: Optional[int] = 1,
) -> list[Latency]:
    """Median/p10 wall ms and median CPU ms per call of each model on `feeds`, interleaved round by round.

    With `threads=1` ONNX Runtime computes on the calling thread, so its CPU time measures the work
    itself and stays meaningful on a machine shared with other jobs (wall time then includes waiting).
    """
    sessions = {k: make_session(p, threads=threads) for k, p in models.items()}
    wall: dict[str, list[float]] = {k: [] for k in sessions}
    cpu: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(warmup + rounds):
        for name, sess in sessions.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            sess.run(None, feeds)
            dt, dc = time.perf_counter() - t0, time.thread_time() - c0
            if r >= warmup:
                wall[name].append(dt * 1e3)
                cpu[name].append(dc * 1e3)
    key = cpu if threads == 1 else wall
    base = float(np.median(next(iter(key.values()))))
    return [
        Latency(
            k,
            float(np.median(wall[k])),
            float(np.percentile(wall[k], 10)),
            float(np.median(cpu[k])),
            base / float(np.median(key[k])),
        )
        for k in sessions
    ]


def format_latency(rows: list[Latency]) -> str:
    lines = [f"{'model':<24} {'wall median ms':>14} {'wall p10 ms':>11} {'cpu ms':>8} {'speed vs ' + rows[0].name:>16}"]
    lines += [f"{r.name:<24} {r.median_ms:>14.2f} {r.p10_ms:>11.2f} {r.cpu_ms:>8.2f} {r.speedup:>15.2f}x" for r in rows]
    return "\n".join(lines)


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median wall s, median process-CPU s) of `repeats` calls of `fn` after one warm-up call.

    Process CPU time stays meaningful on a shared machine where wall time includes waiting.
    """
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)
