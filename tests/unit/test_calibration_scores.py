"""Score calibration: robust statistics per component, causal fused score, false-alarm-rate threshold."""

from __future__ import annotations

import numpy as np
import pytest

from vadedge.calibration.scores import calibrate_scores, fit_threshold
from vadedge.errors import ConfigError, DataError
from vadedge.scoring import RobustStats, ema, fuse

SIGNS = {"psnr": -1, "feature_distance": 1}
WEIGHTS = {"psnr": 0.6, "feature_distance": 0.4}


def _normal_videos(n=4, frames=500, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {"psnr": 30 + rng.normal(0, 1.5, frames), "feature_distance": 0.02 + rng.gamma(2, 0.002, frames)}
        for _ in range(n)
    ]


def test_statistics_are_the_pooled_robust_stats():
    videos = _normal_videos()
    cal = calibrate_scores(videos, SIGNS, WEIGHTS)
    for c in SIGNS:
        ref = RobustStats.fit(np.concatenate([v[c] for v in videos]))
        assert cal.stats[c] == ref
        assert cal.manifest_calibration()[c] == {"location": ref.location, "scale": ref.scale}
    assert cal.frames == 2000 and cal.videos == 4


@pytest.mark.parametrize("target", [0.01, 0.05])
def test_threshold_meets_the_false_alarm_target_with_hysteresis(target):
    videos = _normal_videos()
    cal = calibrate_scores(videos, SIGNS, WEIGHTS, target=target, smoothing=0.3)
    th = cal.threshold
    assert th["policy"] == "false_alarm_rate" and th["target"] == target
    assert th["off"] < th["on"]
    smoothed = np.concatenate([ema(fuse(v, SIGNS, WEIGHTS, cal.stats), 0.3) for v in videos])
    assert np.mean(smoothed >= th["on"]) <= target  # the 'on' level keeps the rate on normal footage
    assert np.mean(smoothed >= th["on"]) >= target / 2  # and is not needlessly conservative
    # held-out normal footage of the same scene stays near the target
    fresh = np.concatenate([ema(fuse(v, SIGNS, WEIGHTS, cal.stats), 0.3) for v in _normal_videos(seed=1)])
    assert np.mean(fresh >= th["on"]) <= 3 * target


def test_fusion_orients_components():
    stats = {"psnr": RobustStats(30.0, 1.0), "feature_distance": RobustStats(0.02, 0.01)}
    low_psnr = fuse({"psnr": np.array([25.0]), "feature_distance": np.array([0.02])}, SIGNS, WEIGHTS, stats)
    high_dist = fuse({"psnr": np.array([30.0]), "feature_distance": np.array([0.07])}, SIGNS, WEIGHTS, stats)
    assert low_psnr[0] == pytest.approx(0.6 * 5) and high_dist[0] == pytest.approx(0.4 * 5)


def test_anomalies_cross_the_threshold():
    videos = _normal_videos()
    cal = calibrate_scores(videos, SIGNS, WEIGHTS, smoothing=0.5)
    normal = _normal_videos(n=1, frames=40, seed=3)[0]
    abnormal = {"psnr": normal["psnr"] - 8, "feature_distance": normal["feature_distance"] + 0.02}
    s = ema(fuse({k: np.r_[normal[k], abnormal[k]] for k in SIGNS}, SIGNS, WEIGHTS, cal.stats), 0.5)
    assert (s[45:] > cal.threshold["on"]).all()


def test_flat_scores_keep_a_strict_gap():
    th = fit_threshold(np.zeros(100), target=0.01)
    assert th["off"] < th["on"]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError):
        calibrate_scores([], SIGNS, WEIGHTS)
    with pytest.raises(DataError):
        calibrate_scores([{"psnr": np.array([]), "feature_distance": np.array([])}], SIGNS, WEIGHTS)
    with pytest.raises(ConfigError, match="components"):
        calibrate_scores([{"psnr": np.ones(5)}], SIGNS, WEIGHTS)
    with pytest.raises(ConfigError, match="false-alarm"):
        fit_threshold(np.ones(10), target=0.7)
    with pytest.raises(ConfigError, match="smoothing"):
        calibrate_scores(_normal_videos(n=1), SIGNS, WEIGHTS, smoothing=0.0)
