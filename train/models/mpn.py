"""MPN (Lv et al., CVPR 2021): U-Net + Dynamic Prototype Unit, meta-learned for few-shot adaptation.

`MPN` is the exportable module: uint8 clip in, per-frame `psnr` and `feature_distance` out, no
per-stream state. The network splits at the DPU tap into a frozen part (encoder and the decoder up
to the tap, `backbone`) and the adaptable part θ (the DPU and every layer after it, `forward`),
which can be called with explicit parameter tensors (`stream_step(..., params=θ')`) — the adapted
parameters of `vadedge.train.adapt.adapt`. The learned Meta-SGD step sizes α live in the model
(`meta_alpha`, same shapes as θ) so a checkpoint carries everything adaptation needs.

`MPNTask` trains the three stages through the generic trainer: `pretrain` (backbone, frame loss
only, DPU bypassed), `dpu` (end to end with Eq. 3; also the default, = the authors' Train.py) and
`meta` (Meta-SGD on K-shot episodes from one video under a random scene shift; only θ and α learn).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from vadedge.errors import ConfigError, DataError
from vadedge.preprocess import InputSpec

from ..backbone import Decoder, Encoder, scaled_channels
from ..data import ClipDataset, make_loader
from ..memory import feature_distance
from ..meta import meta_batch_loss
from ..registry import register_model
from ..scores import psnr
from .mpn_dpu import DPUOutput, DynamicPrototypeUnit, compactness_loss, diversity_loss
from .mpn_shifts import check_kinds, sample_shift

STAGES = ("pretrain", "dpu", "meta")
TAPS = {8: 0, 4: 3, 2: 6, 1: 9}  # DPU tap (downsampling factor) → first decoder step after it
FEATURE_SCORES = ("mse", "psnr")


def alpha_key(name: str) -> str:
    """ParameterDict key of the step size of parameter `name` ('.' is not allowed in keys)."""
    return name.replace(".", "__")


class MPN(nn.Module):
    """Meta Prototype Network. Stateless; θ' can replace the adaptable parameters per call."""

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
        self.meta_alpha = nn.ParameterDict({alpha_key(n): nn.Parameter(torch.full_like(named[n], cfg["alpha_init"]))
                                            for n in self._adaptable})

    # ----- structure -------------------------------------------------------------------------------
    def _steps(self) -> list:
        """The decoder as a sequence; an int i means 'concatenate skip i' (Decoder.features + head)."""
        d = self.decoder
        return [d.stage4, d.up4, 2, d.stage3, d.up3, 1, d.stage2, d.up2, 0, d.head]

    def _adaptable_names(self) -> list[str]:
        names = ["dpu.weight"]
        steps = {id(m): n for n, m in self.decoder.named_children()}
        for step in self._steps()[TAPS[self.tap]:]:
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
        return self._run(d.out, skips, self._steps()[TAPS[self.tap]:]), d

    def head(self, x: torch.Tensor, skips: list[torch.Tensor],
             params: Optional[Mapping[str, torch.Tensor]] = None) -> tuple[torch.Tensor, DPUOutput]:
        """`forward` with the adaptable parameters replaced by `params` (explicit inputs) when given."""
        if params is None:
            return self(x, skips)
        return functional_call(self, dict(params), (x, skips))

    def loss_terms(self, pred: torch.Tensor, target: torch.Tensor, d: DPUOutput) -> dict[str, torch.Tensor]:
        return {"frame": F.mse_loss(pred, target), "compact": compactness_loss(d.query, d.prototypes),
                "diversity": diversity_loss(d.prototypes)}

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

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor],
                    params: Optional[Mapping[str, torch.Tensor]] = None) -> dict:
        """Score B clips: uint8 (B, N, H, W, C) → {"scores": {psnr, feature_*} (B,), "state": {}, ...}.

        `params` (name → tensor, a subset of `adaptable_names`) are the adapted θ' of one stream;
        they are explicit inputs, shared by the B clips of the call.
        """
        context, target = self.split_clip(frames)
        x, skips = self.backbone(context)
        pred, d = self.head(x, skips, params)
        fmse = feature_distance(d.query, d.prototypes)
        feature = fmse if self.cfg["feature_score"] == "mse" else -10.0 * torch.log10(fmse.clamp_min(1e-10))
        return {"scores": {"psnr": psnr(pred, target), self.feature_component: feature}, "state": {},
                "aux": {"feature_mse": fmse}, "pred": pred, "target": target}

    # ----- per-stream adaptation (evaluation / runtime) --------------------------------------------
    def with_params(self, params: Mapping[str, torch.Tensor]) -> "AdaptedMPN":
        return AdaptedMPN(self, dict(params))

    def adapt_stream(self, frames: np.ndarray | torch.Tensor, k: int) -> "AdaptedMPN":
        """Adapt on the first k clips of a stream's uint8 frames (N, H, W, C); score from clip k on."""
        from ..adapt import adapt

        n = self.clip_length
        if len(frames) < k + n - 1:
            raise DataError(f"{k}-shot adaptation needs {k + n - 1} frames, the stream has {len(frames)}")
        if k == 0:
            return self.with_params({})
        video = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
        clips = torch.stack([video[i:i + n] for i in range(k)])
        return self.with_params(adapt(self, self.adaptable_parameters(), self.alphas(), clips))


class AdaptedMPN:
    """An MPN with one stream's adapted θ': the MODEL PROTOCOL, scoring with those parameters."""

    def __init__(self, model: MPN, params: dict[str, torch.Tensor]) -> None:
        self.model, self.params = model, params

    def __getattr__(self, name: str) -> Any:  # spec, clip_length, score_components, … of the model
        return getattr(self.model, name)

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor]) -> dict:
        return self.model.stream_step(frames, state, params=self.params or None)


# ----- training ------------------------------------------------------------------------------------
class EpisodeLoader:
    """Meta-training batches: `episodes` K-shot episodes, each from a different video when possible.

    An episode = 2K distinct clips of one video, all under one scene shift drawn from `shifts`;
    K go to the support set (inner step), K to the query set (outer loss). Yields
    {"support": uint8 (E, K, N, H, W, C), "query": same}. Seeded; each epoch draws new episodes.
    """

    def __init__(self, dataset: ClipDataset, episodes: int, shots: int, batches: int, shifts: list[str],
                 seed: int) -> None:
        self.dataset, self.episodes, self.shots, self.batches = dataset, episodes, shots, batches
        self.shifts = check_kinds(shifts) or ["none"]
        by_video: dict[int, list[int]] = {}
        for i, (vi, _) in enumerate(dataset.index):
            by_video.setdefault(vi, []).append(i)
        self.by_video = {v: idx for v, idx in by_video.items() if len(idx) >= 2 * shots}
        if not self.by_video:
            raise DataError(f"meta-training needs a video with at least {2 * shots} clips "
                            f"({2 * shots + dataset.clip_length - 1} frames)")
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.batches

    def _episode(self, video: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.choice(self.by_video[video], size=2 * self.shots, replace=False)
        clips = np.stack([self.dataset[int(i)].numpy() for i in idx])
        shift = sample_shift(str(self.rng.choice(self.shifts)), self.rng)
        clips = shift.apply(clips.reshape(-1, *clips.shape[2:])).reshape(clips.shape)
        return clips[: self.shots], clips[self.shots:]

    def __iter__(self):
        videos = sorted(self.by_video)
        for _ in range(self.batches):
            pick = self.rng.choice(videos, size=self.episodes, replace=len(videos) < self.episodes)
            sup, qry = zip(*(self._episode(int(v)) for v in pick))
            yield {"support": torch.from_numpy(np.stack(sup)), "query": torch.from_numpy(np.stack(qry))}


def stage_value(value: Any, stage: str) -> Any:
    """Preset values may be per stage ({'pretrain': …, 'dpu': …, 'meta': …}); CLI overrides are plain."""
    return value[stage] if isinstance(value, dict) else value


class MPNTask:
    """Training logic for the three stages (the trainer passes `stage`; default 'dpu').

    The preset's per-stage `epochs` / `lr` / `batch_size` are resolved here (in place, so the saved
    config shows what ran). In the meta stage `batch_size` is the number of episodes per batch.
    """

    def __init__(self, model: MPN, train_cfg: dict, generator: Optional[torch.Generator] = None,
                 stage: Optional[str] = None, **_: object) -> None:
        self.stage = stage or "dpu"
        if self.stage not in STAGES:
            raise ConfigError(f"MPN stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        for key in ("epochs", "lr", "batch_size"):
            train_cfg[key] = stage_value(train_cfg[key], self.stage)
        self.model, self.cfg = model, train_cfg

    def prepare(self, dataset: ClipDataset) -> None:
        """Runs after --init weights are loaded: switch the DPU on/off for this stage."""
        self.model.dpu_gate.fill_(0.0 if self.stage == "pretrain" else 1.0)

    def make_loader(self, dataset: ClipDataset, batch_size: int, seed: int, workers: Optional[int]):
        if self.stage != "meta":
            return make_loader(dataset, batch_size, shuffle=True, seed=seed, workers=workers)
        batches = self.cfg["meta_batches_per_epoch"] or len(dataset.videos)  # null: one per training video
        return EpisodeLoader(dataset, batch_size, int(self.cfg["shots"]), int(batches),
                             list(self.cfg["episode_shifts"]), seed)

    def trainable_parameters(self) -> list[nn.Parameter]:
        m = self.model
        alpha = {id(p) for p in m.meta_alpha.parameters()}
        if self.stage == "meta":
            return list(m.adaptable_parameters().values()) + list(m.meta_alpha.parameters())
        skip = alpha | ({id(m.dpu.weight)} if self.stage == "pretrain" else set())
        return [p for p in m.parameters() if id(p) not in skip]

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """MPN has no stream state; checkpoints of other families/stages may carry some: ignored."""

    def training_step(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        if self.stage == "meta":
            return self._meta_step(batch)
        m = self.model
        context, target = m.split_clip(batch)
        x, skips = m.backbone(context)
        pred, d = m(x, skips)
        terms = m.loss_terms(pred, target, d)
        loss = terms["frame"] if self.stage == "pretrain" else m.total_loss(terms)
        return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}

    def _meta_step(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Second-order Meta-SGD on a batch of episodes; the frozen part runs once, without gradients."""
        m = self.model
        m.eval()  # frozen BatchNorm statistics, as at test time
        sup, qry = batch["support"], batch["query"]
        e, k = sup.shape[:2]
        both = m.adaptation_data(torch.cat([sup, qry]).flatten(0, 1))

        def part(i: int) -> tuple:
            sl = slice(i * k, (i + 1) * k)
            x, skips, target = both
            return x[sl], [s[sl] for s in skips], target[sl]

        episodes = [(part(i), part(e + i)) for i in range(e)]
        params, alphas = m.adaptable_parameters(), m.alphas()
        outer, inner = meta_batch_loss(m.adaptation_loss, params, alphas, episodes,
                                       second_order=bool(self.cfg["second_order"]))
        with torch.no_grad():  # the query loss without adaptation: outer < before means adaptation helps
            before = torch.stack([m.adaptation_loss(params, q) for _, q in episodes]).mean()
        mean_alpha = torch.cat([a.detach().abs().flatten() for a in alphas.values()]).mean()
        return outer, {"loss": outer.item(), "inner": inner.item(), "query_unadapted": before.item(),
                       "alpha_abs_mean": mean_alpha.item()}


# ----- presets -------------------------------------------------------------------------------------
def _mpn_presets() -> dict[str, dict]:
    """`paper` = the published setting (code where the paper is silent); edge presets as MNAD's."""
    base_model = {
        "height": 256, "width": 256, "color": "rgb", "frames": 4, "width_mult": 1.0,
        "batchnorm": False,  # the authors' code removes every BatchNorm
        "prototypes": 10, "dpu_tap": 1,  # full-resolution tap (Table 5: best)
        "score_weight": 0.5,  # S = S_fra + λs·S_fea, λs = 1 → equal weights after min-max
        "feature_score": "mse",  # paper: S_fea = L_c; "psnr" = the code's Test.py
        "lambda_feature": 1.0, "lambda_diversity": 0.01,  # λ1, λ2 (paper)
        "alpha_init": 1e-6,  # code's meta_alpha_init
    }
    base_train = {
        "epochs": {"pretrain": 60, "dpu": 20, "meta": 1000},
        "lr": {"pretrain": 1e-4, "dpu": 1e-4, "meta": 1e-5},
        "batch_size": {"pretrain": 4, "dpu": 4, "meta": 10},  # meta: episodes per batch
        "weight_decay": 0.0,
        "shots": 2,  # code: 2 pairs for the inner step, 2 for the outer loss
        "meta_batches_per_epoch": None,  # null = one batch per training video (the code's "epoch")
        "episode_shifts": ["none", "crop", "flip", "scale", "brightness_contrast", "noise"],  # blur held out
        "second_order": True,
    }
    presets = {"paper": {"model": base_model, "train": base_train}}
    edge = {  # name: (size, width multiplier)
        "edge-xs": ((96, 96), 0.125),
        "edge-s": ((128, 128), 0.25),
        "edge-m": ((192, 192), 0.5),
    }
    for name, ((h, w), width) in edge.items():
        presets[name] = {
            "model": {**base_model, "height": h, "width": w, "width_mult": width, "color": "gray",
                      "batchnorm": True, "alpha_init": 1e-2},
            "train": {**base_train,
                      "epochs": {"pretrain": 8, "dpu": 8, "meta": 30},
                      "lr": {"pretrain": 1e-3, "dpu": 5e-4, "meta": 1e-4},
                      "batch_size": {"pretrain": 8, "dpu": 8, "meta": 8}},
        }
    return presets


@register_model("mpn", task=MPNTask, presets=_mpn_presets(),
                description="MPN: U-Net + dynamic prototype unit at the full-resolution tap, Meta-SGD few-shot adaptation")
def build_mpn(cfg: dict) -> MPN:
    return MPN(cfg)
