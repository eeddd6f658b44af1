"""The MPN network (Lv et al., CVPR 2021): U-Net + Dynamic Prototype Unit, θ replaceable per call.

`MPN` is the exportable module: uint8 clip in, per-frame `psnr` and `feature_distance` out, no
per-stream state. The network splits at the DPU tap into a frozen part (encoder and the decoder up
to the tap, `backbone`) and the adaptable part θ (the DPU and every layer after it, `forward`),
which can be called with explicit parameter tensors (`stream_step(..., params=θ')`) — the adapted
parameters of `vadedge.train.adapt.adapt`. The learned Meta-SGD step sizes α live in the model
(`meta_alpha`, same shapes as θ) so a checkpoint carries everything adaptation needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from vadedge.errors import ConfigError, DataError
from vadedge.preprocess import InputSpec

from ..backbone import Decoder, Encoder, scaled_channels
from ..memory import feature_distance
from ..score_heads import psnr
from .mpn_dpu import DPUOutput, DynamicPrototypeUnit, compactness_loss, diversity_loss

TAPS = {8: 0, 4: 3, 2: 6, 1: 9}  # DPU tap (downsampling factor) → first decoder step after it
FEATURE_SCORES = ("mse", "psnr")


def alpha_key(name: str) -> str:
    """ParameterDict key of the step size of parameter `name` ('.' is not allowed in keys)."""
    return name.replace(".", "__")


class MPN(nn.Module):
    """Meta Prototype Network. Stateless; θ' can replace the adaptable parameters per call."""

    dpu_gate: torch.Tensor  # buffer: 0 = DPU bypassed

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.spec = InputSpec(cfg["height"], cfg["width"], cfg["color"], cfg["frames"])
        if int(cfg["dpu_tap"]) not in TAPS:
            raise ConfigError(f"dpu_tap must be one of {sorted(TAPS)} (decoder resolution 1/tap), got {cfg['dpu_tap']}")
        if cfg["feature_score"] not in FEATURE_SCORES:
            raise ConfigError(f"feature_score must be one of {FEATURE_SCORES}, got {cfg['feature_score']!r}")
        c = self.spec.channels
        width, bn = cfg["width_mult"], cfg["batchnorm"]
        self.encoder = Encoder(c * self.spec.frames, width, bn)
        self.decoder = Decoder(self.encoder.out_channels, c, width, skips=True, batchnorm=bn)
        self.tap = int(cfg["dpu_tap"])
        c1, c2, c3, c4 = scaled_channels(width)
        self.dpu = DynamicPrototypeUnit({1: 2 * c1, 2: 2 * c2, 4: 2 * c3, 8: c4}[self.tap], int(cfg["prototypes"]))
        self.register_buffer("dpu_gate", torch.ones(()))  # 0 = DPU bypassed (backbone pre-training)
        self.score_weight = float(cfg["score_weight"])
        self.lambda_feature = float(cfg["lambda_feature"])
        self.lambda_diversity = float(cfg["lambda_diversity"])
        self._adaptable = self._adaptable_names()
        named = dict(self.named_parameters())
        self.meta_alpha = nn.ParameterDict(
            {alpha_key(n): nn.Parameter(torch.full_like(named[n], cfg["alpha_init"])) for n in self._adaptable}
        )

    # ----- structure -------------------------------------------------------------------------------
    def _steps(self) -> list:
        """The decoder as a sequence; an int i means 'concatenate skip i' (Decoder.features + head)."""
        d = self.decoder
        return [d.stage4, d.up4, 2, d.stage3, d.up3, 1, d.stage2, d.up2, 0, d.head]

    def _adaptable_names(self) -> list[str]:
        names = ["dpu.weight"]
        steps = {id(m): n for n, m in self.decoder.named_children()}
        for step in self._steps()[TAPS[self.tap] :]:
            if isinstance(step, nn.Module):
                names += [f"decoder.{steps[id(step)]}.{p}" for p, _ in step.named_parameters()]
        return names

    @property
    def adaptable_names(self) -> list[str]:
        """θ: the DPU and all layers after it (the paper's τ ∪ δ)."""
        return list(self._adaptable)

    def adaptable_parameters(self) -> dict[str, nn.Parameter]:
        named = dict(self.named_parameters())
        return {n: named[n] for n in self._adaptable}

    def alphas(self) -> dict[str, nn.Parameter]:
        """Learned Meta-SGD step sizes α by parameter name (same shapes as θ)."""
        return {n: self.meta_alpha[alpha_key(n)] for n in self._adaptable}

    @property
    def clip_length(self) -> int:
        return self.spec.frames + 1

    # ----- computation -----------------------------------------------------------------------------
    def split_clip(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, N, H, W, C) → context (B, T·C, H, W) and target (B, C, H, W), both in [-1, 1]."""
        x = frames.to(torch.float32).permute(0, 1, 4, 2, 3) / 127.5 - 1.0
        b, _, c, h, w = x.shape
        return x[:, : self.spec.frames].reshape(b, self.spec.frames * c, h, w), x[:, -1]

    def _run(self, x: torch.Tensor, skips: list[torch.Tensor], steps: list) -> torch.Tensor:
        for step in steps:
            x = torch.cat([x, skips[step]], 1) if isinstance(step, int) else step(x)
        return x

    def backbone(self, context: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Frozen part E_η: the tap features (B, C_tap, H/tap, W/tap) and the encoder skips."""
        z, skips = self.encoder(context)
        return self._run(z, skips, self._steps()[: TAPS[self.tap]]), skips

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> tuple[torch.Tensor, DPUOutput]:
        """Adaptable part f_θ: DPU + the rest of the decoder → predicted frame in [-1, 1] and DPU output."""
        d = self.dpu(x, self.dpu_gate)
        return self._run(d.out, skips, self._steps()[TAPS[self.tap] :]), d

    def head(
        self, x: torch.Tensor, skips: list[torch.Tensor], params: Optional[Mapping[str, torch.Tensor]] = None
    ) -> tuple[torch.Tensor, DPUOutput]:
        """`forward` with the adaptable parameters replaced by `params` (explicit inputs) when given."""
        if params is None:
            return self(x, skips)
        return functional_call(self, dict(params), (x, skips))

    def loss_terms(self, pred: torch.Tensor, target: torch.Tensor, d: DPUOutput) -> dict[str, torch.Tensor]:
        return {
            "frame": F.mse_loss(pred, target),
            "compact": compactness_loss(d.query, d.prototypes),
            "diversity": diversity_loss(d.prototypes),
        }

    def total_loss(self, terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Eq. 3: L_fra + λ1 (L_c + λ2 L_d), all MSE-based as in the code (see docs/models/mpn.md)."""
        return terms["frame"] + self.lambda_feature * (terms["compact"] + self.lambda_diversity * terms["diversity"])

    # ----- adaptation hooks (vadedge.train.adapt) --------------------------------------------------
    def adaptation_data(self, clips: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Frozen features of uint8 clips (K, N, H, W, C): (tap, skips, target), no gradients."""
        with torch.no_grad():
            context, target = self.split_clip(clips)
            x, skips = self.backbone(context)
        return x, skips, target

    def adaptation_loss(self, params: Mapping[str, torch.Tensor], data: tuple) -> torch.Tensor:
        """The training loss (Eq. 3) of f_θ with θ = `params` on precomputed `adaptation_data`."""
        x, skips, target = data
        pred, d = self.head(x, skips, params)
        return self.total_loss(self.loss_terms(pred, target, d))

    # ----- MODEL PROTOCOL --------------------------------------------------------------------------
    def initial_state(self) -> dict[str, torch.Tensor]:
        """MPN keeps nothing between frames: prototypes are rebuilt from every clip."""
        return {}

    @property
    def feature_component(self) -> str:
        return "feature_distance" if self.cfg["feature_score"] == "mse" else "feature_psnr"

    @property
    def score_components(self) -> dict[str, int]:
        return {"psnr": -1, self.feature_component: +1 if self.cfg["feature_score"] == "mse" else -1}

    @property
    def score_weights(self) -> dict[str, float]:
        """S = w·g(frame) + (1 − w)·g(feature); w = 0.5 ⇔ the paper's S_fra + λs·S_fea with λs = 1.

        A checkpoint whose DPU is bypassed (pre-training stage) scores with the frame term only.
        """
        if float(self.dpu_gate) == 0.0:
            return {"psnr": 1.0, self.feature_component: 0.0}
        return {"psnr": self.score_weight, self.feature_component: 1.0 - self.score_weight}

    def stream_step(
        self, frames: torch.Tensor, state: dict[str, torch.Tensor], params: Optional[Mapping[str, torch.Tensor]] = None
    ) -> dict:
        """Score B clips: uint8 (B, N, H, W, C) → {"scores": {psnr, feature_*} (B,), "state": {}, ...}.

        `params` (name → tensor, a subset of `adaptable_names`) are the adapted θ' of one stream;
        they are explicit inputs, shared by the B clips of the call.
        """
        context, target = self.split_clip(frames)
        x, skips = self.backbone(context)
        pred, d = self.head(x, skips, params)
        fmse = feature_distance(d.query, d.prototypes)
        feature = fmse if self.cfg["feature_score"] == "mse" else -10.0 * torch.log10(fmse.clamp_min(1e-10))
        return {
            "scores": {"psnr": psnr(pred, target), self.feature_component: feature},
            "state": {},
            "aux": {"feature_mse": fmse},
            "pred": pred,
            "target": target,
        }

    # ----- per-stream adaptation (evaluation / runtime) --------------------------------------------
    def with_params(self, params: Mapping[str, torch.Tensor]) -> AdaptedMPN:
        return AdaptedMPN(self, dict(params))

    def adapt_stream(self, frames: np.ndarray | torch.Tensor, k: int) -> AdaptedMPN:
        """Adapt on the first k clips of a stream's uint8 frames (N, H, W, C); score from clip k on."""
        from ..adapt import adapt

        n = self.clip_length
        if len(frames) < k + n - 1:
            raise DataError(f"{k}-shot adaptation needs {k + n - 1} frames, the stream has {len(frames)}")
        if k == 0:
            return self.with_params({})
        video = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
        clips = torch.stack([video[i : i + n] for i in range(k)])
        return self.with_params(adapt(self, self.adaptable_parameters(), self.alphas(), clips))


class AdaptedMPN:
    """An MPN with one stream's adapted θ': the MODEL PROTOCOL, scoring with those parameters."""

    def __init__(self, model: MPN, params: dict[str, torch.Tensor]) -> None:
        self.model, self.params = model, params

    def __getattr__(self, name: str) -> Any:  # spec, clip_length, score_components, … of the model
        return getattr(self.model, name)

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor]) -> dict:
        return self.model.stream_step(frames, state, params=self.params or None)
