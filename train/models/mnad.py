"""MNAD (Park et al., CVPR 2020): U-Net + a 10-item memory read by softmax and written by a gated rule.

`MNAD` is the pure, exportable module (frames + memory in, scores + new memory out); `MNADTask`
holds the training logic (losses, the memory carried across batches). Registered as `mnad-pred`
(4 frames → 5th, skips) and `mnad-recon` (1 frame, no skips).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from vadedge.preprocess import InputSpec

from ..backbone import Decoder, Encoder
from ..losses import compactness_loss, reconstruction_loss, separateness_loss
from ..memory import feature_distance, init_memory, l2_normalize, memory_delta, memory_read, memory_update
from ..registry import register_model
from ..score_heads import PsnrFeatureScoring, psnr, regular_score


class MNAD(PsnrFeatureScoring, nn.Module):
    """Memory-guided normality autoencoder. Stateless: the memory bank is an explicit input/output."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.spec = InputSpec(cfg["height"], cfg["width"], cfg["color"], cfg["frames"])
        self.predict_future = bool(cfg["predict_future"])
        c = self.spec.channels
        self.encoder = Encoder(c * self.spec.frames, cfg["width_mult"], cfg["batchnorm"])
        self.memory_dim = self.encoder.out_channels
        self.memory_size = int(cfg["memory_size"])
        self.decoder = Decoder(
            2 * self.memory_dim, c, cfg["width_mult"], cfg["skips"], cfg["batchnorm"], cfg.get("upsample", "deconv")
        )
        self.score_weight = float(cfg["score_weight"])
        self.update_threshold = float(cfg["update_threshold"])

    @property
    def clip_length(self) -> int:
        """Frames per sample: T context frames (+ the target for prediction models)."""
        return self.spec.frames + (1 if self.predict_future else 0)

    def split_clip(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, N, H, W, C) → model input (B, T·C, H, W) and target (B, C, H, W), both in [-1, 1]."""
        x = frames.to(torch.float32).permute(0, 1, 4, 2, 3) / 127.5 - 1.0  # B, N, C, H, W
        b, n, c, h, w = x.shape
        context = x[:, : self.spec.frames].reshape(b, self.spec.frames * c, h, w)
        target = x[:, -1]
        return context, target

    def encode(self, context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Queries (B, K, D), unit-norm, and the skip maps."""
        z, skips = self.encoder(context)
        q = l2_normalize(z.flatten(2).transpose(1, 2))
        return q, skips

    def decode(
        self, query: torch.Tensor, memory: torch.Tensor, skips: list[torch.Tensor], hw: tuple[int, int]
    ) -> torch.Tensor:
        read, _ = memory_read(query, memory)
        fused = torch.cat([query, read], dim=-1).transpose(1, 2).reshape(query.shape[0], -1, *hw)
        return self.decoder(fused, skips)

    def forward(self, context: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted frame (B, C, H, W) in [-1, 1] and the queries (B, K, D)."""
        query, skips = self.encode(context)
        hw = (context.shape[-2] // 8, context.shape[-1] // 8)
        return self.decode(query, memory, skips, hw), query

    def initial_state(self) -> dict[str, torch.Tensor]:
        """A placeholder per-stream state (unbatched); trained checkpoints carry the real memory."""
        return {"memory": init_memory(self.memory_size, self.memory_dim, torch.Generator().manual_seed(0))}

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor]) -> dict:
        """One scoring step for B independent streams.

        frames: uint8 (B, N, H, W, C); state: {"memory": (B, M, D)}. Returns {"scores": {psnr,
        feature_distance} each (B,), "state": {"memory": gated new memory}, "aux": {"regular_score"},
        "pred", "target"}. Each stream reads and writes only its own memory.
        """
        memory = state["memory"]
        context, target = self.split_clip(frames)
        pred, query = self(context, memory)
        e_t = regular_score(pred, target)
        new_memory = memory_update(query, memory, e_t < self.update_threshold)
        return {
            "scores": {"psnr": psnr(pred, target), "feature_distance": feature_distance(query, memory)},
            "state": {"memory": new_memory},
            "aux": {"regular_score": e_t},
            "pred": pred,
            "target": target,
        }


class MNADTask:
    """Training logic: reconstruction + λc·compactness + λs·separateness; memory written every batch.

    In training the write sums each sample's own update term (query softmax per frame, never across
    the batch) and is applied after the losses used the old items, as in the reference code.
    """

    def __init__(self, model: MNAD, train_cfg: dict, generator: Optional[torch.Generator] = None, **_: object) -> None:
        self.model = model
        self.cfg = train_cfg
        self.memory = init_memory(model.memory_size, model.memory_dim, generator)

    def state(self) -> dict[str, torch.Tensor]:
        return {"memory": self.memory}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.memory = state["memory"].clone()

    def training_step(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        context, target = self.model.split_clip(frames)
        mem = self.memory.unsqueeze(0).expand(frames.shape[0], -1, -1)
        pred, query = self.model(context, mem)
        rec = reconstruction_loss(pred, target)
        compact = compactness_loss(query, mem)
        separate = separateness_loss(query, mem, self.cfg["margin"])
        loss = rec + self.cfg["lambda_compact"] * compact + self.cfg["lambda_separate"] * separate
        with torch.no_grad():
            delta = memory_delta(query.detach(), mem).sum(0)
            self.memory = l2_normalize(self.memory + delta)
        return loss, {"loss": loss.item(), "rec": rec.item(), "compact": compact.item(), "separate": separate.item()}


def _mnad_presets(predict: bool) -> dict[str, dict]:
    """`paper` = the published setting; edge presets = smaller inputs/widths measured in docs/results.md."""
    base_model = {
        "height": 256,
        "width": 256,
        "color": "rgb",
        "frames": 4 if predict else 1,
        "predict_future": predict,
        "width_mult": 1.0,
        "skips": predict,
        "batchnorm": True,
        "memory_size": 10,
        "upsample": "deconv",  # the papers' transposed conv; "resize" = 1×1 conv + nearest ×2 (int8-friendly)
        "score_weight": 0.6 if predict else 0.7,  # λ in S_t = λ(1 − g(PSNR)) + (1 − λ) g(D)
        "update_threshold": 0.01 if predict else 0.015,  # γ: write only when E_t < γ
    }
    base_train = {
        "lr": 2e-4 if predict else 2e-5,
        "batch_size": 4,
        "epochs": 60,
        "lambda_compact": 0.1 if predict else 0.01,
        "lambda_separate": 0.1 if predict else 0.01,
        "margin": 1.0,
        "weight_decay": 0.0,
    }
    presets = {"paper": {"model": base_model, "train": base_train}}
    edge = {
        # name: (size, width multiplier, colour, epochs, lr)
        "edge-xs": ((96, 96), 0.125, "gray", 30, 1e-3),
        "edge-s": ((128, 192), 0.25, "gray", 15, 1e-3),  # measured on Ped2: docs/results.md
        "edge-m": ((192, 192), 0.5, "gray", 10, 5e-4),
    }
    for name, ((h, w), width, color, epochs, lr) in edge.items():
        presets[name] = {
            "model": {**base_model, "height": h, "width": w, "width_mult": width, "color": color},
            "train": {**base_train, "epochs": epochs, "lr": lr if predict else lr / 2, "batch_size": 8},
        }
    return presets


@register_model(
    "mnad-pred",
    task=MNADTask,
    presets=_mnad_presets(True),
    description="MNAD prediction: 4 frames → 5th, U-Net skips, 10-item memory",
)
def build_mnad_pred(cfg: dict) -> MNAD:
    return MNAD(cfg)


@register_model(
    "mnad-recon",
    task=MNADTask,
    presets=_mnad_presets(False),
    description="MNAD reconstruction: 1 frame, no skips, 10-item memory",
)
def build_mnad_recon(cfg: dict) -> MNAD:
    return MNAD(cfg)
