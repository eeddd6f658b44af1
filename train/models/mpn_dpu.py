"""MPN's Dynamic Prototype Unit (docs/design.md §10.3, §11.2) as dense tensor ops.

Shapes: features (B, C, h, w) at the decoder tap, viewed as N = h·w query vectors of dimension C;
M prototypes per frame. Nothing persists between frames: the prototypes are recomputed from each
input, so the unit is stateless. Two exportable pieces:

* `prototype_formation(query, weight)` — the M bias-free scoring maps ψ_m(x) = a_mᵀx, a softmax
  over the N positions per map (the code's way of keeping the paper's w^{n,m} positive and summing
  to one), prototypes p_m = Σ_n w^{n,m} x^n, L2-normalised (what every consumer uses). This is the
  `vadedge::PrototypeFormation(query[B,N,D], weight[M,D]) -> prototypes[B,M,D]` node.
* retrieval = `memory_read(query, prototypes)` of `train/memory.py` (softmax over M of q·p̂ᵀ,
  weighted sum; the `vadedge::MemoryRead` node) followed by L2-normalisation of the read-out, then
  the residual aggregation out = q + read.

Both reductions are matmuls, never the (B, N, M, C) broadcast of the authors' code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..memory import feature_distance, l2_normalize, memory_read


def prototype_formation(query: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Unit-norm per-frame prototypes (B, M, D) from unit queries (B, N, D) and scoring weights (M, D)."""
    attention = torch.softmax(torch.matmul(query, weight.t()), dim=1)  # (B, N, M), softmax over positions
    return l2_normalize(torch.matmul(attention.transpose(1, 2), query))


def prototype_read(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Retrieval x̃^n = Σ_m softmax_m(x^n·p̂_m) p̂_m, L2-normalised (as the code): (B, N, D)."""
    read, _ = memory_read(query, prototypes)
    return l2_normalize(read)


def compactness_loss(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """L_c: mean squared distance of each query to its most relevant prototype (argmax index, no grad).

    The paper writes the L2 norm; the code (and the feature score) use the MSE, which we follow so
    that training loss and score are the same quantity. Gradients reach queries and prototypes.
    """
    return feature_distance(query, prototypes).mean()


def diversity_loss(prototypes: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """L_d: mean over unordered pairs m < m' of [margin − ‖p̂_m − p̂_m'‖²]_+ (code form).

    On unit prototypes ‖a − b‖² < 1 ⇔ ‖a − b‖ < 1, so with γ = 1 the code's squared form and the
    paper's plain norm penalise the same pairs (cosine > 0.5); only the magnitude differs.
    """
    m = prototypes.shape[1]
    if m < 2:
        return prototypes.sum() * 0.0
    gram = torch.matmul(prototypes, prototypes.transpose(1, 2))
    sq = (2.0 - 2.0 * gram).clamp_min(0.0)  # ‖p̂_i − p̂_j‖² for unit vectors
    upper = torch.triu(torch.ones(m, m, dtype=prototypes.dtype, device=prototypes.device), diagonal=1)
    return (F.relu(margin - sq) * upper).sum(dim=(1, 2)).mean() / upper.sum()


@dataclass
class DPUOutput:
    """What the unit computes for one batch: the aggregated map and what losses/scores need."""

    out: torch.Tensor  # (B, C, h, w): q + gate · read
    query: torch.Tensor  # (B, N, C) unit queries
    prototypes: torch.Tensor  # (B, M, C) unit prototypes


class DynamicPrototypeUnit(nn.Module):
    """M scoring maps (bias-free linear C → M, the paper's 1.28 K parameters at C = 128, M = 10)."""

    def __init__(self, channels: int, prototypes: int = 10) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(prototypes, channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's default

    @property
    def prototypes(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, gate: torch.Tensor | float = 1.0) -> DPUOutput:
        """x (B, C, h, w) → q + gate·read; gate = 0 bypasses the unit (backbone pre-training)."""
        b, c, h, w = x.shape
        query = l2_normalize(x.flatten(2).transpose(1, 2))
        protos = prototype_formation(query, self.weight)
        fused = query + gate * prototype_read(query, protos)
        return DPUOutput(fused.transpose(1, 2).reshape(b, c, h, w), query, protos)
