"""Meta-SGD (Li et al. 2017) as MPN uses it (docs/design.md §10.3; the paper's Eq. 9–11): model-agnostic pieces.

A *loss function* here is `loss_fn(params, data) -> scalar`, where `params` maps parameter names to
tensors (the adaptable subset θ) and `data` is whatever one set of pairs needs. The update is
U(θ, ∇L; α) = θ − α ⊙ ∇θ L with a learned step size α of θ's shape. One episode = one inner step on
the support pairs, loss of the adapted θ' on the query pairs (of the same video); the meta
objective is the mean of those query losses over a batch of episodes, differentiated through the
inner step (second order: `create_graph=True`) with respect to both θ and α.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

LossFn = Callable[[Mapping[str, torch.Tensor], Any], torch.Tensor]


def sgd_update(
    params: Mapping[str, torch.Tensor], grads: Mapping[str, torch.Tensor], alphas: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """θ' = θ − α ⊙ g for every named tensor (differentiable in θ, α and g)."""
    return {n: params[n] - alphas[n] * grads[n] for n in params}


def gradients(loss: torch.Tensor, params: Mapping[str, torch.Tensor], *, create_graph: bool) -> dict[str, torch.Tensor]:
    """∇θ loss by name; parameters the loss does not reach get zeros (so the update is defined)."""
    names = list(params)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph, allow_unused=True)
    return {n: g if g is not None else torch.zeros_like(params[n]) for n, g in zip(names, grads)}


def inner_step(
    loss_fn: LossFn,
    params: Mapping[str, torch.Tensor],
    alphas: Mapping[str, torch.Tensor],
    support: Any,
    *,
    create_graph: bool = True,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One Meta-SGD step on the support pairs: (θ', inner loss). `create_graph` keeps second order."""
    loss = loss_fn(params, support)
    grads = gradients(loss, params, create_graph=create_graph)
    return sgd_update(params, grads, alphas), loss


def episode_loss(
    loss_fn: LossFn,
    params: Mapping[str, torch.Tensor],
    alphas: Mapping[str, torch.Tensor],
    support: Any,
    query: Any,
    *,
    second_order: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(outer loss L(query; θ'), inner loss L(support; θ)) of one episode (Eq. 10–11)."""
    adapted, inner = inner_step(loss_fn, params, alphas, support, create_graph=second_order)
    return loss_fn(adapted, query), inner


def meta_batch_loss(
    loss_fn: LossFn,
    params: Mapping[str, torch.Tensor],
    alphas: Mapping[str, torch.Tensor],
    episodes: Iterable[tuple[Any, Any]],
    *,
    second_order: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean outer and inner loss over a batch of (support, query) episodes; backprop the first."""
    outer, inner = [], []
    for support, query in episodes:
        o, i = episode_loss(loss_fn, params, alphas, support, query, second_order=second_order)
        outer.append(o)
        inner.append(i.detach())
    if not outer:
        raise ValueError("meta_batch_loss needs at least one episode")
    return torch.stack(outer).mean(), torch.stack(inner).mean()
