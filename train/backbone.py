"""The Frame-Pred / MNAD U-Net (docs/design.md §10.1) with width multiplier, skips and BatchNorm switches."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

BASE_CHANNELS = (64, 128, 256, 512)


def scaled_channels(width: float) -> tuple[int, ...]:
    """Stage widths for a width multiplier, rounded to a multiple of 4 (at least 8)."""
    return tuple(max(8, int(round(c * width / 4)) * 4) for c in BASE_CHANNELS)


def _conv(cin: int, cout: int, bn: bool, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


def double_conv(cin: int, cout: int, bn: bool, last_activation: bool = True) -> nn.Sequential:
    """conv-BN-ReLU ×2; without the last BN/ReLU when `last_activation` is False (MNAD bottleneck)."""
    return nn.Sequential(*_conv(cin, cout, bn), *_conv(cout, cout, bn and last_activation, last_activation))


UPSAMPLE_MODES = ("deconv", "resize")


def upsample(cin: int, cout: int, bn: bool, mode: str = "deconv") -> nn.Sequential:
    """×2 upsampling to `cout` channels.

    "deconv" is the papers' 3×3 stride-2 transposed convolution. "resize" is a 1×1 conv-BN-ReLU at the
    low resolution followed by nearest ×2 (the next stage's 3×3 convs do the spatial mixing): 1/9 of
    the MACs, and every op has an int8 kernel in ONNX Runtime, which ConvTranspose lacks
    (docs/benchmarks.md, change 8).
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    if mode == "deconv":
        layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)]
    else:
        layers = [nn.Conv2d(cin, cout, 1)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    if mode == "resize":
        layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """4-stage encoder; returns the raw bottleneck (no last BN/ReLU) and the three skip maps."""

    def __init__(self, in_channels: int, width: float = 1.0, batchnorm: bool = True) -> None:
        super().__init__()
        c1, c2, c3, c4 = scaled_channels(width)
        self.out_channels = c4
        self.stage1 = double_conv(in_channels, c1, batchnorm)
        self.stage2 = double_conv(c1, c2, batchnorm)
        self.stage3 = double_conv(c2, c3, batchnorm)
        self.stage4 = double_conv(c3, c4, batchnorm, last_activation=False)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        s1 = self.stage1(x)
        s2 = self.stage2(self.pool(s1))
        s3 = self.stage3(self.pool(s2))
        z = self.stage4(self.pool(s3))
        return z, [s1, s2, s3]


class Decoder(nn.Module):
    """Decoder with optional U-Net skips. `features()` stops at the full-resolution tap (MPN's DPU site)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: float = 1.0,
        skips: bool = True,
        batchnorm: bool = True,
        upsample_mode: str = "deconv",
    ) -> None:
        super().__init__()
        c1, c2, c3, c4 = scaled_channels(width)
        self.skips = skips
        self.stage4 = double_conv(in_channels, c4, batchnorm)

        def up(cin: int, cout: int) -> nn.Sequential:
            return upsample(cin, cout, batchnorm, upsample_mode)

        if skips:  # up to the next stage's width, then concat the skip (MNAD-P)
            self.up4, self.stage3 = up(c4, c3), double_conv(2 * c3, c3, batchnorm)
            self.up3, self.stage2 = up(c3, c2), double_conv(2 * c2, c2, batchnorm)
            self.up2 = up(c2, c1)
            self.tap_channels = 2 * c1
        else:  # keep widths when upsampling (MNAD-R)
            self.up4, self.stage3 = up(c4, c4), double_conv(c4, c3, batchnorm)
            self.up3, self.stage2 = up(c3, c3), double_conv(c3, c2, batchnorm)
            self.up2 = up(c2, c2)
            self.tap_channels = c2
        self.head = nn.Sequential(
            *_conv(self.tap_channels, c1, batchnorm),
            *_conv(c1, c1, batchnorm),
            nn.Conv2d(c1, out_channels, 3, padding=1),
            nn.Tanh(),
        )

    def features(self, z: torch.Tensor, skips: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        if self.skips:
            assert skips is not None
        used = skips if self.skips else None
        x = self.up4(self.stage4(z))
        if used is not None:
            x = torch.cat([x, used[2]], 1)
        x = self.up3(self.stage3(x))
        if used is not None:
            x = torch.cat([x, used[1]], 1)
        x = self.up2(self.stage2(x))
        if used is not None:
            x = torch.cat([x, used[0]], 1)
        return x

    def forward(self, z: torch.Tensor, skips: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
        return self.head(self.features(z, skips))
