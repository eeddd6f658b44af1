"""The machine's float32 matrix-multiply peak (a large SGEMM) and the arithmetic that relates a model to it.

A benchmark row's "share of peak" is `achieved GFLOP/s / SGEMM GFLOP/s`, where achieved GFLOP/s is
`2 × GMAC per frame × frames per second` (one multiply-accumulate = two floating-point operations)
and the SGEMM figure is measured in the same run, with the same thread count, so both numbers see
the same clock, turbo state and background load.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np


def gemm_gflops(n: int, seconds: float) -> float:
    """GFLOP/s of one n×n×n matrix product that took `seconds` (2·n³ floating-point operations)."""
    if seconds <= 0:
        raise ValueError("seconds must be > 0")
    return 2.0 * float(n) ** 3 / seconds / 1e9


def achieved_gflops(gmac_per_frame: float, fps: float) -> float:
    """Floating-point work rate of a model: 2 FLOP per multiply-accumulate × GMAC/frame × frames/s."""
    return 2.0 * gmac_per_frame * fps


def peak_share(gflops: float, peak_gflops: float) -> float:
    """Achieved GFLOP/s as a fraction of the measured SGEMM peak (0.85 = 85 %)."""
    if peak_gflops <= 0:
        raise ValueError("peak_gflops must be > 0")
    return gflops / peak_gflops


@dataclass
class PeakResult:
    """Best SGEMM rate per library; `gflops` is the highest (the machine's peak for this run)."""

    gflops: float
    library: str
    n: int
    threads: Optional[int]
    by_library: dict[str, float]
    threads_controlled: dict[str, bool]

    def to_dict(self) -> dict:
        return asdict(self)


def _time_best(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page faults, thread pool start, kernel selection
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def numpy_sgemm(n: int = 2048, threads: Optional[int] = None, repeats: int = 5) -> tuple[float, bool]:
    """Best numpy float32 n×n matmul GFLOP/s; True if the BLAS thread count could be set to `threads`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    controlled = False
    ctx = None
    if threads and importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_limits

        ctx = threadpool_limits(limits=int(threads), user_api="blas")
        controlled = True
    try:
        seconds = _time_best(lambda: np.matmul(a, b, out=out), repeats)
    finally:
        if ctx is not None:
            ctx.restore_original_limits()
    return gemm_gflops(n, seconds), controlled


def torch_sgemm(n: int = 2048, threads: Optional[int] = None, repeats: int = 5) -> Optional[float]:
    """Best torch float32 n×n matmul GFLOP/s on the CPU, or None without torch."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        with torch.inference_mode():
            seconds = _time_best(lambda: torch.matmul(a, b, out=out), repeats)
    finally:
        torch.set_num_threads(old)
    return gemm_gflops(n, seconds)


def measure_peak(
    threads: Optional[int] = None, n: int = 2048, repeats: int = 5, libraries: tuple[str, ...] = ("numpy", "torch")
) -> PeakResult:
    """SGEMM peak of this machine now: the best of numpy (its BLAS) and torch, same thread count."""
    by: dict[str, float] = {}
    controlled: dict[str, bool] = {}
    if "numpy" in libraries:
        by["numpy"], controlled["numpy"] = numpy_sgemm(n, threads, repeats)
    if "torch" in libraries:
        t = torch_sgemm(n, threads, repeats)
        if t is not None:
            by["torch"], controlled["torch"] = t, True
    if not by:
        raise ValueError("no SGEMM library measured")
    lib = max(by, key=lambda name: by[name])
    return PeakResult(by[lib], lib, n, threads, by, controlled)
