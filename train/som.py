"""A small vectorised self-organising map: DLAN-AC's Adaptive Clusterer (docs/design.md §10.5; the paper's Eq. 1–4).

Why our own NumPy SOM and not `minisom`: the clusterer needs two things, an online SOM over a few
thousand feature vectors (a short sequential loop either way) and the winner of *every* training
feature vector to compute the cluster count M (~650 k vectors on Ped2), which is one chunked
matrix product here. That is ~60 lines, deterministic under our seed, torch-free, and adds no
dependency to the `train` extra. The update rule is minisom's (the authors' code uses minisom):

* winner = argmin_l ‖x − c_l‖₂ (Eq. 1);
* neighbourhood h = exp(−‖r_l − r_win‖² / (2σ(t)²)) over positions r on a square lattice
  (the standard SOM / minisom form; the paper writes it over distances, see docs/design.md §10.5);
* c_l ← c_l + η(t)·h·(x − c_l) (Eq. 3) with the paper's asymptotic decay
  η(t) = η / (1 + t/(k/2)), σ(t) = σ / (1 + t/(k/2)), k = number of iterations.

`cluster_count` is Eq. 4: the mean over feature maps of the number of distinct winning neurons,
cast to int as the authors' code does (at least 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np


def lattice_positions(neurons: int) -> np.ndarray:
    """(L, 2) row/column positions of L neurons on a near-square lattice (5×5 for L = 25)."""
    cols = int(math.ceil(math.sqrt(neurons)))
    idx = np.arange(neurons)
    return np.stack([idx // cols, idx % cols], axis=1).astype(np.float64)


def winners(x: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row of x: (N,) int64, chunked matmuls."""
    c2 = (centres**2).sum(1)
    out = np.empty(len(x), np.int64)
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk]
        d2 = c2[None, :] - 2.0 * xs @ centres.T  # ‖x‖² is the same for every centre
        out[s : s + chunk] = d2.argmin(1)
    return out


def train_som(
    x: np.ndarray,
    neurons: int = 25,
    *,
    iterations: int = 5000,
    sigma: float = 0.5,
    learning_rate: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Online SOM over rows of x (N, D); returns the trained centres (L, D) in lattice order.

    Centres start at L distinct random samples (minisom's `random_weights_init`); each iteration
    presents one random sample.
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"SOM input must be a non-empty (N, D) array, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), size=neurons, replace=len(x) < neurons)].copy()
    pos = lattice_positions(neurons)
    order = rng.integers(0, len(x), size=iterations)
    for t, i in enumerate(order):
        decay = 1.0 + t / (iterations / 2.0)
        eta, sig = learning_rate / decay, sigma / decay
        sample = x[i]
        win = int(((centres - sample) ** 2).sum(1).argmin())
        h = np.exp(-((pos - pos[win]) ** 2).sum(1) / (2.0 * sig * sig))
        centres += (eta * h)[:, None] * (sample - centres)
    return centres


def presence(win: np.ndarray, neurons: int) -> np.ndarray:
    """win: (Q, K) winner of every vector of every feature map -> (Q, L) bool, neuron l wins in map q."""
    present = np.zeros((win.shape[0], neurons), bool)
    np.put_along_axis(present, win, True, axis=1)
    return present


def cluster_count(win: np.ndarray, neurons: int) -> int:
    """Eq. 4: M = int(mean over maps of the number of distinct winning neurons), at least 1."""
    return max(1, int(presence(win, neurons).sum(1).mean()))


@dataclass
class ClusterResult:
    """The clusterer's output: all L centres ordered by use (most maps first), M and the usage counts."""

    centres: np.ndarray  # (L, D), ordered so that the first M are the kept (non-ghost) clusters
    num_kept: int  # M
    maps_won: np.ndarray  # (L,) number of feature maps in which each (ordered) neuron wins at least once
    mean_winners: float  # the un-rounded Eq. 4 mean


def adaptive_cluster(
    features: np.ndarray,
    neurons: int = 25,
    *,
    iterations: int = 5000,
    sigma: float = 0.5,
    learning_rate: float = 0.5,
    seed: int = 0,
    max_fit_vectors: Optional[int] = 200_000,
) -> ClusterResult:
    """Run the Adaptive Clusterer over feature maps (Q, K, D): train the SOM, count M, order the centres.

    The SOM trains on the pooled vectors (a seeded subsample of `max_fit_vectors` if larger); M and
    the usage counts use every vector. Centres are reordered by how many maps each neuron wins in
    (descending, ties by lattice index), so "the first M clusters" of the paper are the M neurons
    that typical frames actually use and the G = L − M ghosts start from the rarely used ones.
    """
    features = np.asarray(features, np.float64)
    if features.ndim != 3:
        raise ValueError(f"features must be (maps, vectors, dim), got shape {features.shape}")
    q, k, d = features.shape
    flat = features.reshape(q * k, d)
    fit = flat
    if max_fit_vectors is not None and len(flat) > max_fit_vectors:
        fit = flat[np.random.default_rng(seed + 1).choice(len(flat), max_fit_vectors, replace=False)]
    centres = train_som(fit, neurons, iterations=iterations, sigma=sigma, learning_rate=learning_rate, seed=seed)
    win = winners(flat, centres).reshape(q, k)
    present = presence(win, neurons)
    maps_won = present.sum(0)
    order = np.argsort(-maps_won, kind="stable")
    mean = float(present.sum(1).mean())
    return ClusterResult(centres[order], max(1, int(mean)), maps_won[order], mean)
