"""DLAN-AC's Adaptive Clusterer (vadedge.train.som): winners, Eq. 4 and the SOM on a toy set."""

from __future__ import annotations

import numpy as np
import pytest

from vadedge.train.som import adaptive_cluster, cluster_count, lattice_positions, train_som, winners


def _toy_maps(seed: int = 0):
    """60 feature maps of 20 vectors; blob 0 is in every map, blobs 1–3 each in a third of them."""
    rng = np.random.default_rng(seed)
    means = np.eye(8)[:4]
    maps = [np.concatenate([means[b] + 0.03 * rng.normal(size=(10, 8)) for b in (0, 1 + q % 3)]) for q in range(60)]
    return np.stack(maps), means


def test_lattice_is_square_for_25_neurons():
    pos = lattice_positions(25)
    assert pos.shape == (25, 2) and pos.max(0).tolist() == [4, 4]


def test_winners_match_brute_force():
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(300, 6)), rng.normal(size=(7, 6))
    want = [int(np.argmin([np.linalg.norm(xi - cl) for cl in c])) for xi in x]
    assert winners(x, c, chunk=64).tolist() == want


def test_cluster_count_is_eq4_with_int_cast():
    rng = np.random.default_rng(2)
    win = rng.integers(0, 5, size=(11, 4))
    mean = np.mean([len(set(row.tolist())) for row in win])
    assert cluster_count(win, 5) == int(mean)
    assert cluster_count(np.zeros((3, 4), np.int64), 5) == 1


def test_one_som_iteration_is_eq3():
    """With one iteration, every centre moves by η·h·(x − c), h the lattice Gaussian around the winner."""
    x = np.random.default_rng(3).normal(size=(5, 3))
    c0 = train_som(x, 4, iterations=0, seed=9)
    c1 = train_som(x, 4, iterations=1, sigma=0.8, learning_rate=0.5, seed=9)
    rng = np.random.default_rng(9)
    rng.choice(len(x), size=4, replace=False)
    sample = x[rng.integers(0, len(x), size=1)[0]]
    win = int(np.argmin(((c0 - sample) ** 2).sum(1)))
    pos = lattice_positions(4)
    h = np.exp(-((pos - pos[win]) ** 2).sum(1) / (2 * 0.8**2))
    np.testing.assert_allclose(c1, c0 + 0.5 * h[:, None] * (sample - c0))


def test_adaptive_clusterer_on_toy_set():
    feats, means = _toy_maps()
    res = adaptive_cluster(feats, 4, iterations=2000, sigma=0.5, learning_rate=0.5, seed=0)
    assert res.num_kept == 2 and res.mean_winners == pytest.approx(2.0)  # every map holds two blobs
    dist = np.linalg.norm(res.centres[:, None] - means[None], axis=-1)
    assert dist.min(0).max() < 0.1  # one centre at every blob mean
    assert dist[0].argmin() == 0  # ordered by use: the blob present in every map comes first
    assert res.maps_won.tolist() == [60, 20, 20, 20]


def test_adaptive_clusterer_rejects_bad_shapes():
    with pytest.raises(ValueError):
        adaptive_cluster(np.zeros((10, 4)), 4)
