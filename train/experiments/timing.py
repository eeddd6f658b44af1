"""Timing helper shared by the step-time experiments: median wall and process-CPU seconds."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_time(fn: Callable[[], None], repeats: int) -> tuple[float, float]:
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
