"""DLAN-AC (Yang et al., ECCV 2022): Dynamic Local Aggregation Network with Adaptive Clusterer (docs/design.md §10.5).

A U-Net predicts the 5th frame from 4. At the 32×32 (here H/8×W/8) bottleneck, a NetVLAD layer
softly assigns every feature vector to L = 25 clusters (Eq. 6: 1×1 conv + softmax), aggregates the
residuals per cluster (Eq. 5), keeps only the first M clusters (the other G = L − M are "ghost"
clusters — the dynamic redundant clustering strategy), normalises them and maps each through a
fully connected layer to a per-frame prototype. Each feature reads the prototypes by softmax
(Eq. 7–8) and the read-out is concatenated with the feature before decoding. M and the initial
centres come from the Adaptive Clusterer: a SOM over training features (`vadedge.train.som`) run
by `DLANTask.prepare` before the main training. Score = PSNR only (Eq. 16–17).

The model is stateless (prototypes are computed per frame), `initial_state() == {}`. The SOM and
the losses are training-only; the exported graph is convs + softmax + matmuls + a static slice.

Training stages (`vadedge train --stage`):
* `full` (default): `prepare` trains encoder + decoder for `ac_epochs` with L_int + L_gd (the
  paper's "AC pre-clustering" stage), runs the SOM on the encoder's features, then the trainer
  runs the formal training (all four losses) — the paper's end-to-end two-stage run.
* `ae`: only the autoencoder with L_int + L_gd (no DLAN; the decoder gets [F, F]); the checkpoint
  is the plain AE baseline and can seed `main` with `--init`.
* `main`: SOM on the current encoder (use with `--init` from an `ae` checkpoint), then formal training.
When the model already has clusters (resume, `--init` from a clustered checkpoint, or a fixed
`num_prototypes` in the config = the paper's "w/o AC" ablation with random centres) no SOM runs.

Choices where the paper is silent (also in docs/models/dlan-ac.md):
* Features are L2-normalised encoder outputs (as MNAD/MPN), prototypes are L2-normalised after the
  FC: Eq. 7's dot product then *is* the cosine similarity the prose names, and the read is exactly
  the `MemoryRead` contract node with the prototypes as memory (B, M, D).
* NetVLAD softness α = 10 (`vlad_alpha`); assignment conv (W, b) and centres are separate learnable
  parameters initialised from the SOM (W = 2αc, b = −α‖c‖²), as in NetVLAD.
* "First M": the SOM centres are ordered by how many training feature maps each neuron wins in
  (most used first), so the kept clusters are those typical frames use; the paper's M (Eq. 4) is
  cast with int() as the authors' code does.
* Normalisation = NetVLAD's intra-normalisation (L2 per cluster) then L2 of the flattened M·D
  vector; the FC is one D→D layer shared by the M clusters (a flat M·D→M·D layer would be 44 M
  weights at D = 512).
* Losses: L_int = MSE, L_gd = Frame-Pred's gradient loss (mean L1), compactness = MSE to the
  nearest prototype, separateness = triplet (nearest vs second-nearest, margin 1) — gradients reach
  both features and prototypes (prototypes are network outputs). Weights 1 / 1 / 0.01 / 0.01 as the
  paper; unlike the authors' code, L_gd stays in the formal stage (the paper's Eq. 15).
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vadedge.errors import ConfigError
from vadedge.preprocess import InputSpec
from vadedge.progress import progress_bar

from ..backbone import Decoder, Encoder
from ..data import ClipDataset, make_loader
from ..memory import l2_normalize, memory_read, nearest_items
from ..registry import register_model
from ..score_heads import psnr
from ..som import adaptive_cluster
from .lai import split_clip

logger = logging.getLogger(__name__)

STAGES = ("full", "ae", "main")


def netvlad_residuals(features: torch.Tensor, assignment: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Eq. 5: V_l = Σ_n β_l(F^n)·(F^n − c_l) for features (B, N, D), β (B, N, L), centres (L, D) → (B, L, D).

    Dense form: βᵀF − (Σ_n β)·c — two matmul-sized ops, no loop over clusters.
    """
    return torch.matmul(assignment.transpose(1, 2), features) - assignment.sum(1).unsqueeze(-1) * centres


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 10 (Frame-Pred): mean |(|∂I|) − (|∂Î|)| over horizontal and vertical image gradients."""

    def grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x[..., :, 1:] - x[..., :, :-1]).abs(), (x[..., 1:, :] - x[..., :-1, :]).abs()

    (px, py), (tx, ty) = grads(pred), grads(target)
    return (px - tx).abs().mean() + (py - ty).abs().mean()


def prototype_compactness(query: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Eq. 11–12: pull each feature to its nearest prototype (MSE; gradients reach both)."""
    nearest, _ = nearest_items(query, prototypes)
    return F.mse_loss(query, nearest)


def prototype_separateness(query: torch.Tensor, prototypes: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Eq. 13–14: [‖F − P_a‖ − ‖F − P_b‖ + γ]₊ with a = nearest, b = second-nearest prototype (mean)."""
    nearest, second = nearest_items(query, prototypes)
    return F.relu((query - nearest).norm(dim=-1) - (query - second).norm(dim=-1) + margin).mean()


class DLANAC(nn.Module):
    """U-Net + NetVLAD prototypes with ghost clusters, read + concat. Stateless.

    `num_prototypes` (M) is 0 until the clusterer ran: the model then is the plain AE (the decoder
    gets [F, F]). M lives in the `num_kept` buffer (saved with the weights) and in `cfg`, which this
    module shares with the trainer on purpose so config.json records the M the SOM chose.
    """

    num_kept: torch.Tensor  # buffer: M, the number of kept clusters

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = cfg
        self.spec = InputSpec(cfg["height"], cfg["width"], cfg["color"], cfg["frames"])
        c, t = self.spec.channels, self.spec.frames
        self.encoder = Encoder(c * t, cfg["width_mult"], cfg["batchnorm"])
        d = self.feature_dim = self.encoder.out_channels
        self.num_clusters = int(cfg["num_clusters"])
        self.alpha = float(cfg["vlad_alpha"])
        self.centres = nn.Parameter(torch.empty(self.num_clusters, d))
        self.assign = nn.Linear(d, self.num_clusters)  # the 1×1 conv of Eq. 6 on (B, N, D) vectors
        self.fc = nn.Linear(d, d)  # shared by the M kept clusters
        self.decoder = Decoder(2 * d, c, cfg["width_mult"], True, cfg["batchnorm"])
        self.register_buffer("num_kept", torch.tensor(0, dtype=torch.int64))
        self.num_prototypes = 0
        self.set_clusters(l2_normalize(torch.randn(self.num_clusters, d)), int(cfg.get("num_prototypes") or 0))
        self.register_load_state_dict_post_hook(lambda module, _keys: module._sync_kept())

    def set_clusters(self, centres: torch.Tensor | np.ndarray, num_kept: int) -> None:
        """Initialise centres and the assignment conv from (L, D) centres (Eq. 6) and keep the first M."""
        if not 0 <= num_kept <= self.num_clusters:
            raise ConfigError(f"num_prototypes must be in [0, {self.num_clusters}], got {num_kept}")
        c = torch.as_tensor(np.asarray(centres), dtype=torch.float32)
        with torch.no_grad():
            self.centres.copy_(c)
            self.assign.weight.copy_(2.0 * self.alpha * c)
            self.assign.bias.copy_(-self.alpha * c.pow(2).sum(1))
            self.num_kept.fill_(num_kept)
        self._sync_kept()

    def _sync_kept(self) -> None:
        self.num_prototypes = int(self.num_kept)
        self.cfg["num_prototypes"] = self.num_prototypes or None

    @property
    def clip_length(self) -> int:
        return self.spec.frames + 1

    def encode(self, context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Unit-norm features (B, N, D) and the skip maps."""
        z, skips = self.encoder(context)
        return l2_normalize(z.flatten(2).transpose(1, 2)), skips

    def prototypes(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame prototypes (B, M, D): soft-assign, aggregate residuals, drop ghosts, normalise, FC."""
        beta = torch.softmax(self.assign(features), dim=-1)  # (B, N, L)
        v = netvlad_residuals(features, beta, self.centres)[:, : self.num_prototypes]
        v = l2_normalize(v)  # intra-normalisation
        v = l2_normalize(v.flatten(1)).reshape(v.shape)  # L2 of the vector form
        return l2_normalize(self.fc(v))

    def forward(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Predicted frame (B, C, H, W), features (B, N, D) and prototypes (B, M, D) (None before clustering)."""
        query, skips = self.encode(context)
        protos = self.prototypes(query) if self.num_prototypes else None
        read = memory_read(query, protos)[0] if protos is not None else query
        hw = (context.shape[-2] // 8, context.shape[-1] // 8)
        fused = torch.cat([query, read], dim=-1).transpose(1, 2).reshape(query.shape[0], -1, *hw)
        return self.decoder(fused, skips), query, protos

    def initial_state(self) -> dict[str, torch.Tensor]:
        return {}

    @property
    def score_components(self) -> dict[str, int]:
        return {"psnr": -1}

    @property
    def score_weights(self) -> dict[str, float]:
        """Eq. 17: S = 1 − g(PSNR) — prediction error only."""
        return {"psnr": 1.0}

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor]) -> dict:
        """Score B streams: {"scores": {"psnr": (B,)}, "state": {}, "aux": {}, "pred", "target"}."""
        context, target = split_clip(frames, self.spec.frames)
        pred, _, _ = self(context)
        return {"scores": {"psnr": psnr(pred, target)}, "state": {}, "aux": {}, "pred": pred, "target": target}


class DLANTask:
    """Training logic: the AC stage in `prepare`, then L_int + λ_gd·L_gd + λ_cp·L_cp + λ_sp·L_sp."""

    def __init__(
        self,
        model: DLANAC,
        train_cfg: dict,
        generator: Optional[torch.Generator] = None,
        stage: Optional[str] = None,
        **_: object,
    ) -> None:
        self.model = model
        self.cfg = train_cfg
        self.stage = stage or "full"
        if self.stage not in STAGES:
            raise ConfigError(f"dlan-ac stages are {', '.join(STAGES)}; got {stage!r}")
        self.seed = generator.initial_seed() if generator is not None else 0

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        pass

    # -- Adaptive Clusterer stage ---------------------------------------------------------------
    def prepare(self, dataset: ClipDataset) -> None:
        """Before the main training: AE pre-training (stage `full`) and the SOM (`full`, `main`)."""
        if self.stage == "ae" or self.model.num_prototypes:
            return
        if self.stage == "full" and self.cfg["ac_epochs"] > 0:
            self.pretrain_autoencoder(dataset, self.cfg["ac_epochs"])
        self.cluster(dataset)

    def ae_loss(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """L_int + λ_gd·L_gd of the plain AE (prototypes bypassed)."""
        context, target = split_clip(frames, self.model.spec.frames)
        pred, _, _ = self.model(context)
        l_int, l_gd = F.mse_loss(pred, target), gradient_loss(pred, target)
        loss = self.cfg["lambda_int"] * l_int + self.cfg["lambda_gd"] * l_gd
        return loss, {"loss": loss.item(), "int": l_int.item(), "gd": l_gd.item()}

    def pretrain_autoencoder(self, dataset: ClipDataset, epochs: int) -> None:
        """The paper's AC pre-clustering stage: encoder + decoder, Adam + cosine annealing, L_int + L_gd."""
        m = self.model
        params = list(m.encoder.parameters()) + list(m.decoder.parameters())
        loader = make_loader(dataset, self.cfg["batch_size"], shuffle=True, seed=self.seed + 7919)
        opt = torch.optim.Adam(params, lr=self.cfg["lr"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * len(loader)))
        m.train()
        for epoch in range(epochs):
            total = 0.0
            for batch in progress_bar(loader, total=len(loader), desc=f"AC pre-clustering {epoch + 1}/{epochs}"):
                loss, logs = self.ae_loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += logs["loss"]
            logger.info("AC pre-clustering epoch %d/%d  loss %.5f", epoch + 1, epochs, total / max(1, len(loader)))

    @torch.no_grad()
    def features(self, dataset: ClipDataset, max_maps: int) -> np.ndarray:
        """Encoder features (Q, N, D) of up to `max_maps` evenly spaced training clips (eval-mode BN)."""
        m = self.model
        idx = np.unique(np.linspace(0, len(dataset) - 1, min(max_maps, len(dataset))).round().astype(int))
        was_training = m.training
        m.eval()
        out = []
        for s in range(0, len(idx), 32):
            clips = torch.stack([dataset[int(i)] for i in idx[s : s + 32]])
            context, _ = split_clip(clips, m.spec.frames)
            out.append(m.encode(context)[0].numpy())
        m.train(was_training)
        return np.concatenate(out)

    def cluster(self, dataset: ClipDataset) -> None:
        """Run the SOM over training features; set M and the initial centres of the model."""
        feats = self.features(dataset, self.cfg["ac_max_maps"])
        res = adaptive_cluster(
            feats,
            self.model.num_clusters,
            iterations=self.cfg["som_iterations"],
            sigma=self.cfg["som_sigma"],
            learning_rate=self.cfg["som_lr"],
            seed=self.seed,
        )
        self.model.set_clusters(res.centres, res.num_kept)
        logger.info(
            "Adaptive Clusterer: M = %d of %d clusters kept (mean %.2f distinct winners over %d feature maps)",
            res.num_kept,
            self.model.num_clusters,
            res.mean_winners,
            len(feats),
        )

    # -- formal training -------------------------------------------------------------------------
    def training_step(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        m = self.model
        if self.stage == "ae" or not m.num_prototypes:
            return self.ae_loss(frames)
        context, target = split_clip(frames, m.spec.frames)
        pred, query, protos = m(context)
        l_int, l_gd = F.mse_loss(pred, target), gradient_loss(pred, target)
        l_cp = prototype_compactness(query, protos)
        l_sp = prototype_separateness(query, protos, self.cfg["margin"])
        loss = (
            self.cfg["lambda_int"] * l_int
            + self.cfg["lambda_gd"] * l_gd
            + self.cfg["lambda_compact"] * l_cp
            + self.cfg["lambda_separate"] * l_sp
        )
        return loss, {
            "loss": loss.item(),
            "int": l_int.item(),
            "gd": l_gd.item(),
            "compact": l_cp.item(),
            "separate": l_sp.item(),
        }


def _dlan_presets() -> dict[str, dict]:
    """`paper` = the published Ped2 setting (10 AC + 80 formal epochs); edge presets as MNAD's."""
    base_model = {
        "height": 256,
        "width": 256,
        "color": "rgb",
        "frames": 4,
        "width_mult": 1.0,
        "batchnorm": True,
        "num_clusters": 25,  # L: SOM neurons = NetVLAD clusters incl. ghosts
        "num_prototypes": None,  # M: set by the Adaptive Clusterer (an int here = fixed M, random centres)
        "vlad_alpha": 10.0,
    }
    base_train = {
        "lr": 2e-4,
        "batch_size": 8,
        "epochs": 80,
        "weight_decay": 0.0,
        "ac_epochs": 10,
        "lambda_int": 1.0,
        "lambda_gd": 1.0,
        "lambda_compact": 0.01,
        "lambda_separate": 0.01,
        "margin": 1.0,
        "som_iterations": 5000,
        "som_sigma": 0.5,
        "som_lr": 0.5,
        "ac_max_maps": 512,
    }
    presets = {"paper": {"model": base_model, "train": base_train}}
    edge = {  # name: (size, width multiplier, colour, epochs, AC epochs, lr) — MNAD's edge grid
        "edge-xs": ((96, 96), 0.125, "gray", 30, 4, 1e-3),
        "edge-s": ((128, 128), 0.25, "gray", 20, 3, 1e-3),
        "edge-m": ((192, 192), 0.5, "gray", 10, 2, 5e-4),
    }
    for name, ((h, w), width, color, epochs, ac_epochs, lr) in edge.items():
        presets[name] = {
            "model": {**base_model, "height": h, "width": w, "width_mult": width, "color": color},
            "train": {**base_train, "epochs": epochs, "ac_epochs": ac_epochs, "lr": lr},
        }
    return presets


@register_model(
    "dlan-ac",
    task=DLANTask,
    presets=_dlan_presets(),
    description="DLAN-AC: 4 frames → 5th, SOM-initialised NetVLAD prototypes with ghost clusters, "
    "read + concat, PSNR score",
)
def build_dlan_ac(cfg: dict) -> DLANAC:
    return DLANAC(cfg)
