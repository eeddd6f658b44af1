"""Lai et al., "Anomaly Detection with Prototype-Guided Discriminative Latent Embeddings" (docs/design.md §10.4).

A U-Net encoder shared by two decoders: the future-frame decoder (with skips) and an RGB-difference
decoder (no skips, training aid only). Between them a prototype-guided memory of N = 100 items:
the read-out *replaces* the query (Eq. 8–10), the items are written during training by a
query-softmax additive update + L2 renormalisation (Eq. 11–12; restricted to each item's nearest
queries by default, see below), and a trace-ratio discriminative
loss Tr(S_W)/Tr(S_B) pulls queries to their nearest item and pushes used items apart (Eq. 13–17).
Score (Eq. 25): S = γ·P + (1 − γ)(1 − D), γ = 0.6, over PSNR and the nearest-item feature distance.

`Lai` is the exportable module: `stream_step` runs encoder → memory read → prediction decoder only,
so the RGB-difference decoder never reaches an exported graph. The paper describes no test-time
write, so the memory is a constant of the model (a parameter, saved in model.safetensors) and the
model carries no per-stream state (`initial_state() == {}`).

Choices where the paper is silent (also in docs/models/lai.md):
* Queries are L2-normalised encoder outputs (as MNAD), so the read is exactly the `MemoryRead`
  contract node, the cosine of Eq. 8 is a dot product, and DIST / Tr(S_W) have a fixed scale.
* Items start as L2-normalised Gaussian rows (spread over the sphere, unlike MNAD's positive
  uniform rows, which are mutually close and make Tr(S_B) tiny at the start).
* Gradients into the items: `item_grad` = "dis" (default: only through L_dis, so Tr(S_B) really
  pushes items apart — with no gradient S_B would be a constant of the step), "all" (also through
  the read, MemAE-like) or "none" (written by the rule only, like MNAD).
* Write rule `write_rule` = "assigned" (default): only the queries whose nearest item is m_j write
  to m_j. The printed rule ("paper": every query writes to every item) pulls all items onto the
  mean query within a few steps (measured: mean pairwise cosine 1.000, L_dis ~1e4–1e5; see
  `vadedge.train.experiments.lai_write_rule`). Softmax over the K queries of one frame, summed over
  the batch like MNAD's trainer, applied *before the next step* (after the optimiser step) so the
  losses' backward sees unmodified items; `LaiTask.state()` flushes the last pending write.
* Trace ratio per frame (K = the queries of one frame), averaged over the batch; the within-class
  term keeps the printed n_j/K weighting; m̄ averages all N items.
* The RGB-difference decoder predicts x_diff / 2 through its tanh (x_diff lies in [−2, 2]); both
  reconstruction losses are MSE (what the MNAD code optimises), weighted 1 / 0.1 / 1 as the paper.
* DIST is the paper's mean L2 distance (not MNAD's MSE) between each query and its nearest item.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from vadedge.errors import ConfigError
from vadedge.preprocess import InputSpec

from ..backbone import Decoder, Encoder
from ..memory import l2_normalize, memory_read, memory_scores, nearest_item_mask
from ..registry import register_model
from ..score_heads import PsnrFeatureScoring, psnr

ITEM_GRAD_MODES = ("dis", "all", "none")
WRITE_RULES = ("paper", "assigned")


def split_clip(frames: torch.Tensor, context_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (B, N, H, W, C) → context (B, T·C, H, W) and target (B, C, H, W), both in [-1, 1]."""
    x = frames.to(torch.float32).permute(0, 1, 4, 2, 3) / 127.5 - 1.0
    b, _, c, h, w = x.shape
    return x[:, :context_frames].reshape(b, context_frames * c, h, w), x[:, -1]


def lai_memory_delta(query: torch.Tensor, memory: torch.Tensor, rule: str = "paper") -> torch.Tensor:
    """Eq. 11–12 write term Σ_i v_ij z_i, v = softmax over the K queries of one stream: (B, N, D).

    rule "paper": every query contributes to every item (as printed). rule "assigned": only the
    queries whose nearest item is m_j contribute to m_j (v masked by the argmax one-hot, MNAD's U_j
    without its max re-normalisation); items that attract no query stay unchanged.
    """
    scores = memory_scores(query, memory)
    v = torch.softmax(scores, dim=1)  # (B, K, N), each column sums to 1
    if rule == "assigned":
        v = v * nearest_item_mask(scores)
    elif rule != "paper":
        raise ConfigError(f"write_rule must be one of {WRITE_RULES}, got {rule!r}")
    return torch.matmul(v.transpose(1, 2), query)


def lai_memory_update(query: torch.Tensor, memory: torch.Tensor, rule: str = "paper") -> torch.Tensor:
    """m_j ← f(m_j + Σ_i v_ij z_i), f = L2 normalisation, for each stream: (B, N, D)."""
    return l2_normalize(memory + lai_memory_delta(query, memory, rule))


def trace_ratio_loss(query: torch.Tensor, memory: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 13–17 per frame: Tr(S_W) / Tr(S_B) with hard nearest-item assignment: (B,).

    Tr(S_B) = Σ_j (n_j/K)‖m_j − m̄‖², Tr(S_W) = Σ_j (n_j/K) Σ_{k∈j} ‖z_k − m_j‖², m̄ = mean of all items.
    Dense: the assignment is an argmax one-hot, counts are its column sums (no loops, no gathers).
    """
    assign = nearest_item_mask(memory_scores(query, memory))  # (B, K, N)
    share = assign.sum(1) / query.shape[1]  # n_j / K: (B, N)
    centred = memory - memory.mean(1, keepdim=True)
    tr_sb = (share * centred.pow(2).sum(-1)).sum(-1)
    d2 = (query - torch.matmul(assign, memory)).pow(2).sum(-1)  # (B, K)
    weight = torch.matmul(assign, share.unsqueeze(-1)).squeeze(-1)  # n_{a(k)} / K per query
    tr_sw = (weight * d2).sum(-1)
    return tr_sw / tr_sb.clamp_min(eps)


def nearest_item_distance(query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """Eq. 22–23: DIST = (1/K) Σ_i ‖z_i − m_1st‖₂, 1st = argmax_j w_ij (= the most similar item): (B,)."""
    nearest = torch.matmul(nearest_item_mask(memory_scores(query, memory)), memory)
    return (query - nearest).norm(dim=-1).mean(-1)


class Lai(PsnrFeatureScoring, nn.Module):
    """Shared encoder, prototype-guided memory (read replaces the query), two decoders. Stateless."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.spec = InputSpec(cfg["height"], cfg["width"], cfg["color"], cfg["frames"])
        c, t = self.spec.channels, self.spec.frames
        self.encoder = Encoder(c * t, cfg["width_mult"], cfg["batchnorm"])
        self.memory_dim = self.encoder.out_channels
        self.memory_size = int(cfg["memory_size"])
        self.memory = nn.Parameter(l2_normalize(torch.randn(self.memory_size, self.memory_dim)))
        self.decoder = Decoder(self.memory_dim, c, cfg["width_mult"], True, cfg["batchnorm"])
        # Training aid only (never called by stream_step, so never exported): predicts x_diff / 2.
        self.diff_decoder = Decoder(self.memory_dim, c * t, cfg["width_mult"], False, cfg["batchnorm"])
        self.score_weight = float(cfg["score_weight"])

    @property
    def clip_length(self) -> int:
        return self.spec.frames + 1

    def items(self) -> torch.Tensor:
        """The memory items, unit-norm: (N, D)."""
        return l2_normalize(self.memory)

    def encode(self, context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Unit-norm queries (B, K, D) and the encoder's skip maps."""
        z, skips = self.encoder(context)
        return l2_normalize(z.flatten(2).transpose(1, 2)), skips

    def to_map(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, K, D) → (B, D, h, w)."""
        return x.transpose(1, 2).reshape(x.shape[0], -1, *hw)

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predicted frame (B, C, H, W), queries (B, K, D) and the items as read (B, N, D)."""
        query, skips = self.encode(context)
        memory = self.items().unsqueeze(0).expand(query.shape[0], -1, -1)
        read, _ = memory_read(query, memory)
        hw = (context.shape[-2] // 8, context.shape[-1] // 8)
        return self.decoder(self.to_map(read, hw), skips), query, memory

    def initial_state(self) -> dict[str, torch.Tensor]:
        """No per-stream state: the memory is not written at test time."""
        return {}

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor]) -> dict:
        """Score B streams: {"scores": {psnr, feature_distance} (B,), "state": {}, "aux": {}, "pred", "target"}."""
        context, target = split_clip(frames, self.spec.frames)
        pred, query, memory = self(context)
        return {
            "scores": {"psnr": psnr(pred, target), "feature_distance": nearest_item_distance(query, memory)},
            "state": {},
            "aux": {},
            "pred": pred,
            "target": target,
        }


class LaiTask:
    """Training: λ_pred·L_pred + λ_diff·L_diff + λ_dis·L_dis, items written by the Eq. 11–12 rule."""

    def __init__(self, model: Lai, train_cfg: dict, generator: Optional[torch.Generator] = None, **_: object) -> None:
        self.model = model
        self.cfg = train_cfg
        if train_cfg["item_grad"] not in ITEM_GRAD_MODES:
            raise ConfigError(f"item_grad must be one of {ITEM_GRAD_MODES}, got {train_cfg['item_grad']!r}")
        if train_cfg["write_rule"] not in WRITE_RULES:
            raise ConfigError(f"write_rule must be one of {WRITE_RULES}, got {train_cfg['write_rule']!r}")
        self.pending: Optional[torch.Tensor] = None  # write computed in the last step, applied in the next

    def flush(self) -> None:
        """Apply the pending memory write to the model's items (after the optimiser step)."""
        if self.pending is not None:
            with torch.no_grad():
                self.model.memory.copy_(l2_normalize(self.model.items() + self.pending))
            self.pending = None

    def state(self) -> dict[str, torch.Tensor]:
        """No stream state; flushes the pending write so the saved model holds the latest items."""
        self.flush()
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.pending = None

    def training_step(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        self.flush()
        m = self.model
        context, target = split_clip(frames, m.spec.frames)
        query, skips = m.encode(context)
        items = m.items().unsqueeze(0).expand(query.shape[0], -1, -1)
        mode = self.cfg["item_grad"]
        read, _ = memory_read(query, items if mode == "all" else items.detach())
        hw = (context.shape[-2] // 8, context.shape[-1] // 8)
        read_map = m.to_map(read, hw)
        pred = m.decoder(read_map, skips)
        diff = 2.0 * m.diff_decoder(read_map)
        target_diff = context - target.repeat(1, m.spec.frames, 1, 1)  # x_clips − I_{t+1} (Eq. 5)
        l_pred = F.mse_loss(pred, target)
        l_diff = F.mse_loss(diff, target_diff)
        l_dis = trace_ratio_loss(query, items if mode in ("dis", "all") else items.detach()).mean()
        loss = self.cfg["lambda_pred"] * l_pred + self.cfg["lambda_diff"] * l_diff + self.cfg["lambda_dis"] * l_dis
        with torch.no_grad():
            self.pending = lai_memory_delta(query.detach(), items.detach(), self.cfg["write_rule"]).sum(0)
        return loss, {"loss": loss.item(), "pred": l_pred.item(), "diff": l_diff.item(), "dis": l_dis.item()}


def _lai_presets() -> dict[str, dict]:
    """`paper` = the published setting (epochs not stated: 60 as MNAD); edge presets as MNAD's."""
    base_model = {
        "height": 256,
        "width": 256,
        "color": "rgb",
        "frames": 4,
        "width_mult": 1.0,
        "batchnorm": True,
        "memory_size": 100,
        "score_weight": 0.6,  # γ in S = γP + (1 − γ)(1 − D)
    }
    base_train = {
        "lr": 2e-4,
        "batch_size": 4,
        "epochs": 60,
        "weight_decay": 0.0,
        "lambda_pred": 1.0,
        "lambda_diff": 0.1,
        "lambda_dis": 1.0,
        "item_grad": "dis",
        "write_rule": "assigned",  # "paper" collapses the items onto the mean query (docs/models/lai.md)
    }
    presets = {"paper": {"model": base_model, "train": base_train}}
    edge = {  # name: (size, width multiplier, colour, epochs, lr) — the same grid as MNAD's edge presets
        "edge-xs": ((96, 96), 0.125, "gray", 30, 1e-3),
        "edge-s": ((128, 128), 0.25, "gray", 20, 1e-3),
        "edge-m": ((192, 192), 0.5, "gray", 10, 5e-4),
    }
    for name, ((h, w), width, color, epochs, lr) in edge.items():
        presets[name] = {
            "model": {**base_model, "height": h, "width": w, "width_mult": width, "color": color},
            "train": {**base_train, "epochs": epochs, "lr": lr, "batch_size": 8},
        }
    return presets


@register_model(
    "lai",
    task=LaiTask,
    presets=_lai_presets(),
    description="Lai et al.: 4 frames → 5th, 100-item prototype memory (read replaces query), "
    "trace-ratio loss, RGB-difference training branch",
)
def build_lai(cfg: dict) -> Lai:
    return Lai(cfg)
