"""MAAM-Net's hard-shrinkage memory addressing and losses against plain reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vadedge.errors import ConfigError
from vadedge.train.models.maam_net import cosine, entropy_loss, hard_shrink_address, latent_loss


def _reference_read(z: np.ndarray, memory: np.ndarray, lam: float, eps: float = 1e-12):
    """Per-query loops in float64, following the paper's Eq. 1–4 literally."""
    b, k, _ = z.shape
    n = memory.shape[0]
    out = np.zeros_like(z, dtype=np.float64)
    weights = np.zeros((b, k, n))
    for bi in range(b):
        for ki in range(k):
            q = z[bi, ki].astype(np.float64)
            s = np.array([q @ m / (max(np.linalg.norm(q), eps) * max(np.linalg.norm(m), eps)) for m in memory])
            e = np.exp(s - s.max())
            st = e / e.sum()
            shrunk = np.array([max(v - lam, 0.0) * v / (abs(v - lam) + eps) for v in st])
            w = shrunk / max(shrunk.sum(), eps)
            weights[bi, ki] = w
            out[bi, ki] = sum(w[i] * memory[i] for i in range(n))
    return out, weights


@pytest.mark.parametrize("n", [7, 50])
def test_hard_shrinkage_matches_reference(n):
    g = torch.Generator().manual_seed(n)
    z = torch.randn(2, 5, 16, generator=g).relu()  # non-negative like the encoder's ReLU output
    memory = torch.randn(n, 16, generator=g)
    memory[0] = 3.0 * z[0, 0]  # one item aligned with a query: a clear winner
    lam = 1.0 / n
    z_hat, w = hard_shrink_address(z, memory, lam)
    ref_hat, ref_w = _reference_read(z.numpy(), memory.numpy(), lam)
    np.testing.assert_allclose(w.numpy(), ref_w, atol=1e-6)
    np.testing.assert_allclose(z_hat.numpy(), ref_hat, atol=1e-5)
    np.testing.assert_allclose(w.sum(-1).numpy(), 1.0, atol=1e-6)
    assert (w[0, 0, 0] == w[0, 0].max()).item()


def test_shrinkage_zeroes_items_below_lambda_and_keeps_the_rest_ordered():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 64, 32, generator=g)
    memory = torch.randn(200, 32, generator=g)
    lam = 1.0 / 200
    _, w = hard_shrink_address(z, memory, lam)
    zn = z / z.norm(dim=-1, keepdim=True)
    mn = memory / memory.norm(dim=-1, keepdim=True)
    soft = torch.softmax(zn @ mn.t(), dim=-1)
    assert torch.equal(w > 0, soft > lam)  # kept exactly where the softmax weight exceeds λ
    kept = (w > 0).sum(-1)
    assert (kept >= 1).all() and (kept < 200).all()


def test_zero_threshold_is_a_plain_softmax_read():
    g = torch.Generator().manual_seed(2)
    z, memory = torch.randn(2, 3, 8, generator=g), torch.randn(10, 8, generator=g)
    z_hat, w = hard_shrink_address(z, memory, 0.0)
    zn = z / z.norm(dim=-1, keepdim=True)
    mn = memory / memory.norm(dim=-1, keepdim=True)
    soft = torch.softmax(zn @ mn.t(), dim=-1)
    np.testing.assert_allclose(w.numpy(), soft.numpy(), atol=1e-6)
    np.testing.assert_allclose(z_hat.numpy(), (soft @ memory).numpy(), atol=1e-5)


def test_gradients_reach_memory_and_queries():
    z = torch.randn(1, 4, 8, requires_grad=True)
    memory = torch.randn(6, 8, requires_grad=True)
    z_hat, w = hard_shrink_address(z, memory, 1 / 6)
    (z_hat.pow(2).sum() + entropy_loss(w)).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert torch.isfinite(memory.grad).all() and memory.grad.abs().sum() > 0


def test_entropy_loss():
    w = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]])
    assert entropy_loss(w).item() == pytest.approx(math.log(2) / 2, abs=1e-6)


def test_latent_loss_forms():
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    # cos = 1, 0.8, 0 with z
    z_hat = torch.tensor([[[2.0, 0.0], [0.8, 0.6], [0.0, 1.0]]])
    np.testing.assert_allclose(cosine(z_hat, z).numpy(), [[1.0, 0.8, 0.0]], atol=1e-6)
    # tolerance: max(1 − cos − 0.1, 0) = 0, 0.1, 0.9
    assert latent_loss(z_hat, z, 0.1, "tolerance").item() == pytest.approx(1.0 / 3, abs=1e-6)
    # printed: max(|cos| − 0.1, 0) = 0.9, 0.7, 0
    assert latent_loss(z_hat, z, 0.1, "printed").item() == pytest.approx(1.6 / 3, abs=1e-6)
    with pytest.raises(ConfigError):
        latent_loss(z_hat, z, 0.1, "other")
