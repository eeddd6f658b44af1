"""MNAD memory read / gated update against a plain loop implementation of the paper's equations."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vadedge.train.memory import feature_distance, l2_normalize, memory_delta, memory_read, memory_update  # noqa: E402


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_read(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """p̂_k = Σ_m softmax_m(p_m·q_k) p_m, one query at a time."""
    out = np.zeros_like(q)
    for k in range(q.shape[0]):
        s = np.array([p[m] @ q[k] for m in range(p.shape[0])])
        w = np.exp(s - s.max())
        w /= w.sum()
        out[k] = sum(w[m] * p[m] for m in range(p.shape[0]))
    return out


def reference_update(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Paper Eq. 3–5 for one frame: U_m sets, softmax over the frame's queries, max over U_m, L2 renorm."""
    K, M = q.shape[0], p.shape[0]
    s = q @ p.T
    nearest = s.argmax(1)
    new = p.copy()
    for m in range(M):
        col = np.exp(s[:, m] - s[:, m].max())
        v = col / col.sum()
        members = [k for k in range(K) if nearest[k] == m]
        if not members:
            continue
        vmax = max(v[k] for k in members)
        upd = sum((v[k] / vmax) * q[k] for k in members)
        new[m] = p[m] + upd
    return new / np.linalg.norm(new, axis=1, keepdims=True)


@pytest.fixture
def qp():
    rng = np.random.default_rng(0)
    return _unit(rng, 2, 12, 6), _unit(rng, 2, 5, 6)  # 2 streams, K=12 queries, M=5 items, D=6


def test_read_matches_reference(qp):
    q, p = qp
    read, w = memory_read(torch.tensor(q), torch.tensor(p))
    for b in range(2):
        np.testing.assert_allclose(read[b].numpy(), reference_read(q[b], p[b]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(w.sum(-1).numpy(), 1.0, rtol=1e-9)


def test_update_matches_reference(qp):
    q, p = qp
    gate = torch.tensor([True, True])
    new = memory_update(torch.tensor(q), torch.tensor(p), gate)
    for b in range(2):
        np.testing.assert_allclose(new[b].numpy(), reference_update(q[b], p[b]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(new.numpy(), axis=-1), 1.0, rtol=1e-9)


def test_item_without_queries_is_unchanged():
    p = np.eye(3, 4)  # item 2 = e3, far from all queries
    q = np.array([[[1, 0.1, 0, 0], [0.1, 1, 0, 0]]], dtype=np.float64)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    new = memory_update(torch.tensor(q), torch.tensor(p[None]), torch.tensor([True]))[0].numpy()
    np.testing.assert_allclose(new[2], p[2])
    assert not np.allclose(new[0], p[0]) and not np.allclose(new[1], p[1])


def test_closed_gate_leaves_memory_unchanged(qp):
    q, p = qp
    new = memory_update(torch.tensor(q), torch.tensor(p), torch.tensor([False, True]))
    np.testing.assert_array_equal(new[0].numpy(), p[0])
    assert not np.allclose(new[1].numpy(), p[1])


def test_streams_batched_equal_streams_alone(qp):
    q, p = (torch.tensor(x) for x in qp)
    both = memory_update(q, p, torch.tensor([True, True]))
    for b in range(2):
        alone = memory_update(q[b : b + 1], p[b : b + 1], torch.tensor([True]))
        torch.testing.assert_close(both[b : b + 1], alone, rtol=0, atol=0)
    rb, _ = memory_read(q, p)
    torch.testing.assert_close(rb[1:], memory_read(q[1:], p[1:])[0], rtol=0, atol=0)


def test_update_softmax_is_per_stream():
    """The query softmax must not span the batch: changing stream 0 must not move stream 1's update."""
    rng = np.random.default_rng(1)
    q = torch.tensor(_unit(rng, 2, 8, 4))
    p = torch.tensor(_unit(rng, 1, 3, 4)).expand(2, -1, -1)
    d1 = memory_delta(q, p)[1]
    q2 = q.clone()
    q2[0] = torch.tensor(_unit(rng, 8, 4))
    torch.testing.assert_close(memory_delta(q2, p)[1], d1)


def test_feature_distance_is_mse_to_nearest_item(qp):
    q, p = qp
    d = feature_distance(torch.tensor(q), torch.tensor(p)).numpy()
    for b in range(2):
        nearest = p[b][(q[b] @ p[b].T).argmax(1)]
        assert d[b] == pytest.approx(((q[b] - nearest) ** 2).mean(), rel=1e-9)


def test_l2_normalize_handles_zero_vectors():
    x = torch.zeros(2, 3)
    assert torch.isfinite(l2_normalize(x)).all()
