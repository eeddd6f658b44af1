"""MNAD memory addressing as dense, static-shape tensor ops (docs/design.md §3).

Shapes: queries (B, K, C) with K = H·W query vectors per frame; memory (B, M, C) — one bank per
stream. Everything here is argmax → one-hot masks, softmax, matmul and L2 normalisation: no loops,
no boolean indexing, no in-place writes, so the same code traces to ONNX and runs per stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True).clamp_min(EPS)


def init_memory(size: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """MNAD's initial items: uniform random rows in [0, 1), L2-normalised. Shape (M, C)."""
    return l2_normalize(torch.rand(size, dim, generator=generator))


def memory_scores(query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Cosine similarities q·pᵀ of unit vectors: (B, K, M)."""
    return torch.matmul(query, memory.transpose(1, 2))


def memory_read(query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Read-out p̂_k = Σ_m softmax_m(q_k·p_m) p_m, returned with the weights (B, K, M)."""
    weights = torch.softmax(memory_scores(query, memory), dim=-1)
    return torch.matmul(weights, memory), weights


def nearest_item_mask(scores: torch.Tensor) -> torch.Tensor:
    """One-hot (B, K, M) of each query's nearest item (argmax over items)."""
    return F.one_hot(scores.argmax(dim=-1), scores.shape[-1]).to(scores.dtype)


def memory_delta(query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """MNAD write term Σ_{k∈U_m} v'_{k,m} q_k per item: (B, M, C).

    v is the softmax over the queries of one frame (per stream, never across the batch); v' divides
    by the max of v over the queries assigned to item m (the paper's U_m; items with no query get 0).
    """
    scores = memory_scores(query, memory)
    assign = nearest_item_mask(scores)
    v = torch.softmax(scores, dim=1) * assign
    v = v / v.amax(dim=1, keepdim=True).clamp_min(EPS)
    return torch.matmul(v.transpose(1, 2), query)


def memory_update(query: torch.Tensor, memory: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Gated per-stream update: streams with gate=True get f(p + Δ), the others keep their memory."""
    updated = l2_normalize(memory + memory_delta(query, memory))
    return torch.where(gate.reshape(-1, 1, 1), updated, memory)


def nearest_items(query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest and second-nearest items per query, each (B, K, C) (second = nearest if M == 1)."""
    scores = memory_scores(query, memory)
    k = min(2, memory.shape[1])
    idx = scores.topk(k, dim=-1).indices
    gather = lambda i: torch.gather(memory, 1, i.unsqueeze(-1).expand(-1, -1, memory.shape[-1]))  # noqa: E731
    first = gather(idx[..., 0])
    second = gather(idx[..., k - 1])
    return first, second


def feature_distance(query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Per-frame mean squared distance between each query and its nearest item: (B,).

    MNAD's code uses this MSE (the paper's Eq. 14 uses the L2 norm); the paper's numbers come from
    the code, so we follow it. Computed through the one-hot mask so it exports without gathers.
    """
    mask = nearest_item_mask(memory_scores(query, memory))
    nearest = torch.matmul(mask, memory)
    return (query - nearest).pow(2).mean(dim=(1, 2))
