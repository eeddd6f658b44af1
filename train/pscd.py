"""PSCD — MAAM-Net's Patch-based Stride Convolutional Detection (docs/design.md §10.6; the paper's Algorithm 1).

A frame is as anomalous as its worst patch: the appearance error map (squared error) and the
motion error map (absolute flow error) are summed over channels and over an h×w window that moves
with a stride (an all-ones convolution: a box filter), fused with weight ψ, and the frame score is
the maximum over patches. Everything is a Conv + Mul/Add + ReduceMax, so it stays inside the
exported graph; patch, stride and ψ are configuration, because the right patch is "the size of a
person" in the camera's view (the paper's own constants differ per dataset). Patch and stride are
pixels (ints) or relative (floats in (0, 1]: patch per frame side, stride per patch side).

`scale` optionally divides each branch's patch sums by a typical value on normal footage (set by
MAAM-Net's training task), so that ψ = 0.5 weighs both branches equally whatever their units
(squared intensity vs pixels of flow); with scale = 1 the fusion is the paper's, on raw errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vadedge.errors import ConfigError


def _pair(v, what: str) -> tuple:
    pair = (v, v) if isinstance(v, (int, float)) else tuple(v)
    if len(pair) != 2 or any(not isinstance(x, (int, float)) or x <= 0 for x in pair):
        raise ConfigError(f"PSCD {what} must be a positive number or [h, w], got {v!r}")
    return pair


def _resolve(value: int | float, ref: int) -> int:
    """An int is pixels; a float in (0, 1] is a fraction of `ref` (rounded, at least 1 pixel)."""
    if isinstance(value, float) and value <= 1.0:
        return max(1, round(value * ref))
    return int(value)


def box_sum(err: torch.Tensor, patch: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Patch sums of an error map (B, C, H, W) over channels and an h×w window: (B, H', W').

    An all-ones convolution (Ones(h, w, C, 1) in the paper) with no padding, so every patch lies
    inside the frame.
    """
    kernel = torch.ones(1, err.shape[1], *patch, dtype=err.dtype, device=err.device)
    return F.conv2d(err, kernel, stride=stride)[:, 0]


@dataclass(frozen=True)
class PSCDConfig:
    """Patch (h, w), stride (sh, sw), fusion weight ψ of the appearance branch (1 − ψ for motion)."""

    patch: tuple[int, int]
    stride: tuple[int, int]
    psi: float

    @classmethod
    def create(cls, patch, stride, psi: float, frame_hw: tuple[int, int]) -> PSCDConfig:
        """Resolve a config for a frame size: ints are pixels; floats in (0, 1] are relative — the
        patch as a fraction of the frame's height/width, the stride as a fraction of the patch — so
        a preset keeps "the size of a person" when the input size is overridden."""
        p = tuple(_resolve(v, n) for v, n in zip(_pair(patch, "patch"), frame_hw))
        s = tuple(_resolve(v, n) for v, n in zip(_pair(stride, "stride"), p))
        if p[0] > frame_hw[0] or p[1] > frame_hw[1]:
            raise ConfigError(f"PSCD patch {p} is larger than the {frame_hw[0]}x{frame_hw[1]} frame")
        if not 0.0 <= float(psi) <= 1.0:
            raise ConfigError(f"PSCD psi must be in [0, 1], got {psi}")
        return cls(p, s, float(psi))  # type: ignore[arg-type]

    def grid(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """Size (H', W') of the patch-error map for a frame size."""
        return tuple((n - p) // s + 1 for n, p, s in zip(frame_hw, self.patch, self.stride))  # type: ignore


def appearance_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d_app = |I − Î|² element-wise (on the [-1, 1] frames, as the reference code): (B, C, H, W)."""
    return (pred - target).pow(2)


def motion_error(pred_flow: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """d_mot = |F − F̂| element-wise: (B, 2, H, W)."""
    return (pred_flow - flow).abs()


def pscd(
    d_app: torch.Tensor, d_mot: torch.Tensor, cfg: PSCDConfig, scale: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Frame scores from the two error maps.

    Returns {"fused": (B,) max of ψ·e_app + (1 − ψ)·e_mot, "app": (B,) max of e_app, "mot": (B,) max
    of e_mot, "map": (B, H', W') the fused patch errors (localisation), "e_app"/"e_mot": the branch
    patch maps}. `scale` = (2,) tensor (appearance, motion) dividing the patch sums.
    """
    e_app = box_sum(d_app, cfg.patch, cfg.stride)
    e_mot = box_sum(d_mot, cfg.patch, cfg.stride)
    if scale is not None:
        e_app = e_app / scale[0]
        e_mot = e_mot / scale[1]
    fused = cfg.psi * e_app + (1.0 - cfg.psi) * e_mot
    return {
        "fused": fused.amax(dim=(1, 2)),
        "app": e_app.amax(dim=(1, 2)),
        "mot": e_mot.amax(dim=(1, 2)),
        "map": fused,
        "e_app": e_app,
        "e_mot": e_mot,
    }
