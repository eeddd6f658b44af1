"""PSNR, normalisation, AUC, EER and E_t against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vadedge.metrics import equal_error_rate, frame_auc, minmax_normalise
from vadedge.scoring import RobustStats, ema


def test_minmax_normalise():
    np.testing.assert_allclose(minmax_normalise(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(minmax_normalise(np.array([5.0, 5.0])), [0.0, 0.0])


def test_auc_hand_computed():
    # positives {0.8, 0.4}, negatives {0.5, 0.1}: pairs (pos > neg): 0.8>0.5, 0.8>0.1, 0.4>0.1 -> 3/4
    assert frame_auc([1, 0, 1, 0], [0.8, 0.5, 0.4, 0.1]) == pytest.approx(0.75)
    assert frame_auc([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert math.isnan(frame_auc([1, 1], [0.3, 0.2]))


def test_eer_hand_computed():
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)
    # one negative above one positive among 2+2: at the crossing FPR = FNR = 0.5
    assert equal_error_rate([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(0.5)


def test_robust_stats_and_z():
    s = RobustStats.fit(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s.location == 3.0
    assert s.scale == pytest.approx(1.4826)
    np.testing.assert_allclose(s.z(np.array([3.0, 4.4826])), [0.0, 1.0])


def test_ema_is_causal():
    x = np.array([0.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(ema(x, 0.5), [0.0, 0.5, 0.75, 0.375])
    np.testing.assert_allclose(ema(x, 1.0), x)
    y = ema(np.array([0.0, 1.0, 1.0, 10.0]), 0.5)
    np.testing.assert_allclose(y[:3], ema(x, 0.5)[:3])  # a future value never changes past outputs


def test_psnr_and_regular_score_hand_computed():
    torch = pytest.importorskip("torch")
    from vadedge.train.score_heads import psnr, regular_score

    target = torch.zeros(1, 1, 2, 2) - 1.0  # 0 in [0, 1]
    pred = target.clone()
    pred[0, 0, 0, 0] = 0.0  # 0.5 in [0, 1] -> errors {0.25, 0, 0, 0}, MSE = 0.0625
    assert psnr(pred, target).item() == pytest.approx(10 * math.log10(1 / 0.0625), rel=1e-6)
    # E_t = Σ w e / Σ w with w = 1 - exp(-e): only one nonzero error -> E_t = 0.25
    assert regular_score(pred, target).item() == pytest.approx(0.25, rel=1e-6)
    pred2 = pred.clone()
    pred2[0, 0, 1, 1] = -0.5  # second error (0.25)^2 = 0.0625
    e = np.array([0.25, 0.0625])
    w = 1 - np.exp(-e)
    assert regular_score(pred2, target).item() == pytest.approx((w * e).sum() / w.sum(), rel=1e-6)
