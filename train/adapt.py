"""Few-shot test-time adaptation (MPN test time, docs/design.md §10.3; docs/design.md §6).

From the first K clip/target pairs of a stream: average the K per-pair gradients of the training
loss with respect to the adaptable parameters θ, take one Meta-SGD step θ' = θ − α ⊙ ḡ, and return
θ' as plain tensors. The runtime feeds θ' to the backend (graph inputs for ONNX Runtime, a refit
for TensorRT); the model's own parameters are never touched, so one loaded model serves every
stream. The model provides two hooks (MPN does):

* `adaptation_data(clips_uint8) -> data` — the frozen part of the network (no gradients);
* `adaptation_loss(params, data) -> scalar` — the loss as a function of explicit parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .meta import gradients, sgd_update


def _as_clips(pairs: Any) -> torch.Tensor:
    clips = torch.as_tensor(np.asarray(pairs)) if not torch.is_tensor(pairs) else pairs
    if clips.dtype != torch.uint8 or clips.ndim != 5:
        raise ValueError(f"pairs must be uint8 clips (K, clip_length, H, W, C), got {clips.dtype} {tuple(clips.shape)}")
    return clips


def adapt(
    model: Any,
    params: Mapping[str, torch.Tensor],
    alphas: Mapping[str, torch.Tensor],
    pairs: Any,
    *,
    chunk_size: int = 8,
) -> dict[str, torch.Tensor]:
    """θ' = θ − α ⊙ mean_k ∇θ L(pair_k) for the K uint8 clips `pairs` (K = 0 returns copies of θ).

    Deterministic (no sampling; a fixed chunking order), runs with the model in eval mode (frozen
    BatchNorm statistics), and works inside `torch.inference_mode` callers. `chunk_size` bounds memory:
    the chunks' gradients are weighted by their share of the K pairs, which equals the mean gradient.
    """
    clips = _as_clips(pairs)
    missing = set(params) - set(alphas)
    if missing:
        raise KeyError(f"no step size alpha for: {', '.join(sorted(missing))}")
    k = clips.shape[0]
    if k == 0:
        return {n: p.detach().clone() for n, p in params.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
            total = {n: torch.zeros_like(p) for n, p in leaves.items()}
            for start in range(0, k, chunk_size):
                chunk = clips[start : start + chunk_size].clone()  # a normal (non-inference) tensor
                data = model.adaptation_data(chunk)
                loss = model.adaptation_loss(leaves, data) * (chunk.shape[0] / k)
                for n, g in gradients(loss, leaves, create_graph=False).items():
                    total[n] += g
            base = {n: p.detach() for n, p in params.items()}
            steps = {n: alphas[n].detach() for n in params}
            return {n: t.detach().clone() for n, t in sgd_update(base, total, steps).items()}
    finally:
        model.train(was_training)
