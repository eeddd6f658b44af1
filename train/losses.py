"""Training losses: reconstruction, MNAD compactness and separateness (docs/design.md §10.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .memory import nearest_items


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the [-1, 1] frames (what MNAD's code optimises)."""
    return F.mse_loss(pred, target)


def compactness_loss(query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Pull each query towards its nearest item (MSE, items detached: only the encoder learns)."""
    nearest, _ = nearest_items(query, memory.detach())
    return F.mse_loss(query, nearest)


def separateness_loss(query: torch.Tensor, memory: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Triplet loss: anchor = query, positive = nearest item, negative = second-nearest item."""
    nearest, second = nearest_items(query, memory.detach())
    d_pos = (query - nearest).norm(dim=-1)
    d_neg = (query - second).norm(dim=-1)
    return F.relu(d_pos - d_neg + margin).mean()
