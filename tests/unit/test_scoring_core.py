"""The one scoring core: the per-frame (runtime) and per-video (calibration, eval) forms agree exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vadedge.errors import ConfigError
from vadedge.scoring import CausalScorer, RobustStats, ScoreRecipe, ema, ema_step, fit_stats, fuse

SIGNS = {"psnr": -1, "fd": 1}
WEIGHTS = {"psnr": 0.6, "fd": 0.4}
STATS = {"psnr": RobustStats(30.0, 1.3), "fd": RobustStats(0.02, 0.007)}


def _components(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return {"psnr": 30 + rng.normal(size=n), "fd": 0.02 + 0.01 * rng.random(n)}


def test_array_fusion_equals_per_frame_fusion_exactly():
    comps = _components()
    batch = fuse(comps, SIGNS, WEIGHTS, STATS)
    frames = [fuse({k: float(v[i]) for k, v in comps.items()}, SIGNS, WEIGHTS, STATS) for i in range(50)]
    assert isinstance(frames[0], float) and batch.tolist() == frames
    # hand value: psnr 28 -> z = -2/1.3, oriented +; fd 0.027 -> z = 1
    assert fuse({"psnr": 28.0, "fd": 0.027}, SIGNS, WEIGHTS, STATS) == pytest.approx(0.6 * 2 / 1.3 + 0.4 * 1.0)
    assert fuse({"psnr": 28.0, "fd": 0.027}, SIGNS, WEIGHTS) == pytest.approx(-0.6 * 28 + 0.4 * 0.027)
    assert fuse({"psnr": 28.0, "fd": 5.0}, SIGNS, {"psnr": 1.0, "fd": 0.0}, STATS) == pytest.approx(2 / 1.3)


def test_causal_scorer_equals_batch_fuse_and_ema_exactly():
    comps = _components(seed=1)
    recipe = ScoreRecipe(
        SIGNS, WEIGHTS, calibration={k: (v.location, v.scale) for k, v in STATS.items()}, smoothing=0.3
    )
    sc = CausalScorer(recipe, "s")
    streamed = [sc.update(i, 0.0, {k: float(v[i]) for k, v in comps.items()})[0] for i in range(50)]
    assert streamed == ema(fuse(comps, SIGNS, WEIGHTS, STATS), 0.3).tolist()


def test_ema_starts_at_the_first_value_and_restarts_after_nan():
    assert ema(np.array([3.0, 5.0]), 0.3).tolist() == [3.0, 0.3 * 5.0 + 0.7 * 3.0]
    y = ema(np.array([1.0, float("nan"), 4.0, 6.0]), 0.5)
    assert y[0] == 1.0 and math.isnan(y[1]) and y[2] == 4.0 and y[3] == 5.0
    assert ema_step(None, 2.0, 0.1) == 2.0
    with pytest.raises(ConfigError):
        ema(np.ones(3), 0.0)


def test_fit_stats_pools_videos():
    videos = [{"x": np.array([1.0, 2.0])}, {"x": np.array([3.0, 4.0, 100.0])}]
    assert fit_stats(videos) == {"x": RobustStats.fit(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))}
