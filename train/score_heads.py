"""Torch score heads (exportable, inside the graph): PSNR, MNAD's weighted regular score E_t, and the
score components (signs, weights) of the PSNR + feature-distance families, MNAD and Lai. The fusion
of components into one score is `vadedge.scoring.fuse` (outside the graph)."""

from __future__ import annotations

import torch


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) * 0.5


def frame_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame MSE on [0, 1] frames (inputs in [-1, 1]): (B,)."""
    return (to_unit_range(pred) - to_unit_range(target)).pow(2).flatten(1).mean(1)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR with peak 1 on [0, 1] frames (MNAD's code; fixed peak keeps streaming scores comparable)."""
    return -10.0 * torch.log10(frame_mse(pred, target).clamp_min(1e-10))


def regular_score(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MNAD's E_t = Σ w·e / Σ w with e the squared error on [0,1] frames and w = 1 − exp(−e): (B,)."""
    e = (to_unit_range(pred) - to_unit_range(target)).pow(2).flatten(1)
    w = 1.0 - torch.exp(-e)
    return (w * e).sum(1) / w.sum(1).clamp_min(1e-12)


class PsnrFeatureScoring:
    """Mixin for families scored by PSNR (higher = more normal) and feature distance (higher = more anomalous),
    fused with weight `score_weight` on PSNR: MNAD's λ in S = λ(1 − g(PSNR)) + (1 − λ) g(D), Lai's γ (Eq. 25)."""

    score_weight: float

    @property
    def score_components(self) -> dict[str, int]:
        """Per-frame score components and their sign: +1 = larger is more anomalous, −1 = more normal."""
        return {"psnr": -1, "feature_distance": +1}

    @property
    def score_weights(self) -> dict[str, float]:
        return {"psnr": self.score_weight, "feature_distance": 1.0 - self.score_weight}
