"""Cost of a model: parameters and multiply-accumulates per frame (torch's FLOP counter / 2)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gmac_per_frame(model) -> float:
    """GMAC of one `stream_step` on a single stream (convolutions, matmuls, memory read and write)."""
    frames = torch.zeros(
        1, model.clip_length, model.spec.height, model.spec.width, model.spec.channels, dtype=torch.uint8
    )
    state = {k: v.unsqueeze(0) for k, v in model.initial_state().items()}
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.stream_step(frames, state)
    model.train(was_training)
    return counter.get_total_flops() / 2e9
