"""MAAM-Net (Wang et al., Pattern Recognition 2023): one frame → reconstructed frame + its optical flow.

Architecture (paper Table 1, docs/design.md §10.6): a strided encoder (3×3 Conv+BN+ReLU, widths 64,
128, 256, 512, 512, strides 1, 2, 2, 2, 2), a learned memory of N items read by cosine similarity,
softmax and hard shrinkage (λ = 1/N, then renormalised; the read-out *replaces* the feature), and
two unshared decoders without skips (4 × ConvTranspose+BN+Dropout(0.3)+ReLU, widths 256, 256, 128,
64, then a linear 3×3 conv): appearance (C channels) and motion (2 channels: the flow). Transposed
convolutions get per-layer `output_padding` so frames whose size is not a multiple of 16 (Ped2's
240×360) come back at their exact size. The memory is a weight learned by back-propagation; there
is no test-time update, so the model has **no stream state**.

Optical flow (decided here, see docs/models/maam-net.md): a clip is 2 frames [I_{t−1}, I_t]; the
model reconstructs the last frame I_t and predicts its velocity field v_t (flow from I_{t−1} to
I_t on I_t's grid, `vadedge.flow` convention). The score for frame t is therefore ready at time t
(the paper scores t with the flow t → t+1, one frame later) and the *first* frame of each video is
left unscored instead of the last. Flow comes from the provider named in the config
(`model.flow`, default OpenCV DIS), computed on the host in the data path: the trainer's loader
yields {"frames", "flow"}, the evaluator asks `host_inputs(clip)`, and an exported graph takes a
`flow` input (float32 [B, clip_length − 1, H, W, 2], channels-last like `frames`) described by
`side_inputs`. Eager `stream_step` without `flow` computes it itself; under export it refuses.

Losses (paper Eq. 5–10): L = ‖I − Î‖² (MSE) + λm·|F − F̂| (L1) + α·entropy(w) + β·L_lat with
λm = 2, α = 3e-4, β = 1e-3, ζ = 0.1. The printed latent loss max(|cos(ẑ, z)| − ζ, 0) contradicts
the prose ("ζ controls the tolerance of dissimilarities"; "a large ζ … causes a quality drop").
We default to the prose's form, `latent_form="tolerance"`: max(1 − cos(ẑ, z) − ζ, 0) per query —
a hinge that lets the reintegration differ from the feature by a tolerated cosine distance ζ and
penalises more; larger ζ = looser reintegration, as the prose says. `latent_form="printed"` gives
Eq. 9 as printed (and, bar the reference code's mean inside the |·|, as coded). Both are measured
on synthetic data in docs/models/maam-net.md.

Scoring: PSCD (train/pscd.py) on d_app = (I − Î)², d_mot = |F − F̂|; components `pscd` (the fused
worst patch, weight 1), `pscd_app` and `pscd_mot` (each branch alone, weight 0: diagnostics).
Values the paper leaves open, chosen here: pixels in [-1, 1] (code); flow in pixels per frame at
the model's input size (no rescaling); no output activation (code); the memory initialised
N(0, 0.02²) (code); ε = 1e-12; PSCD patch ≈ a person (paper preset: the code's Ped2 30×20, stride
8×5, ψ = 10/11 on raw errors; edge presets: the same person size at their resolution, ψ = 0.5 on
errors divided by their typical worst-patch value on normal training frames, see `pscd_normalize`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vadedge.errors import ConfigError
from vadedge.flow import FlowProvider, get_flow_provider
from vadedge.preprocess import InputSpec

from ..data import ClipDataset, make_loader
from ..pscd import PSCDConfig, appearance_error, motion_error, pscd
from ..registry import register_model

EPS = 1e-12
LATENT_FORMS = ("tolerance", "printed")
FLOW_CACHE_LIMIT_BYTES = 1 << 30  # precompute training flows when they fit in 1 GiB (float32)


def _ch(c: int, mult: float) -> int:
    return max(8, int(round(c * mult)))


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def feature_sizes(n: int, levels: int = 4) -> list[int]:
    """Side lengths after each stride-2 'same' conv: n, ⌈n/2⌉, ⌈n/4⌉, … (levels + 1 values)."""
    sizes = [n]
    for _ in range(levels):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class MAAMEncoder(nn.Module):
    """Five 3×3 Conv+BN+ReLU layers, strides 1, 2, 2, 2, 2 (total stride 16), no pooling, no skips."""

    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(self, in_channels: int, width_mult: float = 1.0) -> None:
        super().__init__()
        widths = [_ch(c, width_mult) for c in self.WIDTHS]
        layers, cin = [], in_channels
        for i, c in enumerate(widths):
            layers.append(conv_bn_relu(cin, c, 1 if i == 0 else 2))
            cin = c
        self.layers = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MAAMDecoder(nn.Module):
    """4 × (ConvTranspose 3×3/2 + BN + Dropout + ReLU), widths 256, 256, 128, 64, then a linear 3×3 conv.

    `output_padding` per layer brings each stage to the encoder's exact size for the frame size.
    """

    WIDTHS = (256, 256, 128, 64)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        frame_hw: tuple[int, int],
        width_mult: float = 1.0,
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        hs, ws = feature_sizes(frame_hw[0]), feature_sizes(frame_hw[1])
        blocks, cin = [], in_channels
        for i, c in enumerate(self.WIDTHS):
            c = _ch(c, width_mult)
            src, dst = 4 - i, 3 - i  # index into the size lists: /16 → /8 → … → /1
            pad = (hs[dst] - (2 * hs[src] - 1), ws[dst] - (2 * ws[src] - 1))
            blocks.append(
                nn.Sequential(
                    nn.ConvTranspose2d(cin, c, 3, stride=2, padding=1, output_padding=pad, bias=False),
                    nn.BatchNorm2d(c),
                    nn.Dropout(dropout),
                    nn.ReLU(inplace=True),
                )
            )
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, out_channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(z))


def hard_shrink_address(
    z: torch.Tensor, memory: torch.Tensor, lam: float, eps: float = EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """MAAM-Net / MemAE read (paper Eq. 1–4) as dense ops; z (B, K, C), memory (N, C).

    s = cos(z, m_i); s̃ = softmax_i(s); ŝ = max(s̃ − λ, 0)·s̃ / (|s̃ − λ| + ε); w = ŝ / Σŝ (the sum
    clamped at ε); ẑ = w·M. Returns (ẑ (B, K, C), w (B, K, N)).
    """
    zn = z / z.norm(dim=-1, keepdim=True).clamp_min(eps)
    mn = memory / memory.norm(dim=-1, keepdim=True).clamp_min(eps)
    s = torch.softmax(torch.matmul(zn, mn.t()), dim=-1)
    shrunk = F.relu(s - lam) * s / ((s - lam).abs() + eps)
    w = shrunk / shrunk.sum(dim=-1, keepdim=True).clamp_min(eps)
    return torch.matmul(w, memory), w


def entropy_loss(w: torch.Tensor) -> torch.Tensor:
    """MemAE sparsity (Eq. 8): mean over queries of Σ_i −w_i log w_i (w_i = 0 contributes 0)."""
    return (-w * torch.log(w + EPS)).sum(-1).mean()


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last axis, norms clamped at ε."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(EPS)


def latent_loss(z_hat: torch.Tensor, z: torch.Tensor, zeta: float, form: str = "tolerance") -> torch.Tensor:
    """Margin-based latent loss per query, averaged.

    tolerance (default, the prose): max(1 − cos(ẑ, z) − ζ, 0) — tolerate a cosine distance ζ;
    printed (Eq. 9 as printed):      max(|cos(ẑ, z)| − ζ, 0) — penalise similarity above ζ.
    """
    c = cosine(z_hat, z)
    if form == "tolerance":
        return F.relu(1.0 - c - zeta).mean()
    if form == "printed":
        return F.relu(c.abs() - zeta).mean()
    raise ConfigError(f"latent_form must be one of {LATENT_FORMS}, got {form!r}")


class MAAMNet(nn.Module):
    """Memory-augmented appearance-motion autoencoder; stateless, flow is a host-computed side input."""

    pscd_scale: torch.Tensor  # buffer: typical (app, mot) worst-patch errors

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.cfg = dict(cfg)
        self.spec = InputSpec(cfg["height"], cfg["width"], cfg["color"], 1)
        hw = (self.spec.height, self.spec.width)
        c = self.spec.channels
        self.encoder = MAAMEncoder(c, cfg["width_mult"])
        dim = self.encoder.out_channels
        self.memory_size = int(cfg["memory_size"])
        if self.memory_size < 1:
            raise ConfigError(f"memory_size must be >= 1, got {self.memory_size}")
        self.memory = nn.Parameter(nn.init.trunc_normal_(torch.empty(self.memory_size, dim), std=0.02, a=-0.04, b=0.04))
        lam = cfg.get("shrink_lambda")
        self.shrink_lambda = 1.0 / self.memory_size if lam is None else float(lam)
        self.app_decoder = MAAMDecoder(dim, c, hw, cfg["width_mult"], cfg["dropout"])
        self.mot_decoder = MAAMDecoder(dim, 2, hw, cfg["width_mult"], cfg["dropout"])
        self.pscd_cfg = PSCDConfig.create(cfg["pscd_patch"], cfg["pscd_stride"], cfg["pscd_psi"], hw)
        self.pscd_normalize = bool(cfg["pscd_normalize"])
        # typical worst-patch error (appearance, motion) on normal training frames; set by MAAMTask
        self.register_buffer("pscd_scale", torch.ones(2))
        self.flow_provider: FlowProvider = get_flow_provider(cfg["flow"])

    @property
    def clip_length(self) -> int:
        """Two frames: the scored frame I_t and its predecessor (the flow's source)."""
        return 2

    @property
    def side_inputs(self) -> dict[str, dict[str, Any]]:
        """Graph inputs computed on the host (numpy/OpenCV) next to `frames`, for export and the runtime."""
        s = self.spec
        return {
            "flow": {
                "shape": [self.clip_length - 1, s.height, s.width, 2],
                "dtype": "float32",
                "layout": "velocity of each frame since the previous one, pixels/frame, (dx, dy)",
                "provider": self.flow_provider.config(),
            }
        }

    def host_inputs(self, frames: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """{"flow": float32 (B, N−1, H, W, 2)} for uint8 clips (B, N, H, W, C), by the configured provider."""
        arr = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        return {"flow": torch.from_numpy(self.flow_provider.clip_flow(arr))}

    def frame_input(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 clips (B, N, H, W, C) → the last frame as (B, C, H, W) in [-1, 1]."""
        return frames[:, -1].to(torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0

    @staticmethod
    def flow_target(flow: torch.Tensor) -> torch.Tensor:
        """(B, N−1, H, W, 2) → the last frame's flow as (B, 2, H, W)."""
        return flow[:, -1].to(torch.float32).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (B, C, H, W) in [-1, 1] → {"recon", "flow" (B, 2, H, W), "z", "z_hat" (B, K, D), "w" (B, K, N)}."""
        z = self.encoder(x)
        b, d, h, w = z.shape
        q = z.flatten(2).transpose(1, 2)
        z_hat, weights = hard_shrink_address(q, self.memory, self.shrink_lambda)
        latent = z_hat.transpose(1, 2).reshape(b, d, h, w)
        return {
            "recon": self.app_decoder(latent),
            "flow": self.mot_decoder(latent),
            "z": q,
            "z_hat": z_hat,
            "w": weights,
        }

    def errors(self, x: torch.Tensor, out: dict[str, torch.Tensor], flow: torch.Tensor) -> dict[str, torch.Tensor]:
        """PSCD outputs for a forward pass (see train/pscd.py); normalised by `pscd_scale` when configured."""
        scale = self.pscd_scale if self.pscd_normalize else None
        return pscd(appearance_error(out["recon"], x), motion_error(out["flow"], flow), self.pscd_cfg, scale)

    def initial_state(self) -> dict[str, torch.Tensor]:
        """No per-stream state: the memory is a weight and is not written at test time."""
        return {}

    @property
    def score_components(self) -> dict[str, int]:
        """All three are patch errors: larger = more anomalous."""
        return {"pscd": +1, "pscd_app": +1, "pscd_mot": +1}

    @property
    def score_weights(self) -> dict[str, float]:
        """PSCD fuses inside the graph (ψ), so the frame score is `pscd`; the branches are diagnostics."""
        return {"pscd": 1.0, "pscd_app": 0.0, "pscd_mot": 0.0}

    def stream_step(
        self, frames: torch.Tensor, state: dict[str, torch.Tensor], flow: Optional[torch.Tensor] = None
    ) -> dict:
        """Score the last frame of B clips: frames uint8 (B, 2, H, W, C), flow float32 (B, 1, H, W, 2).

        `flow` is a host input (see `host_inputs`); if omitted in eager mode it is computed here with
        the configured provider. Returns {"scores": {pscd, pscd_app, pscd_mot} each (B,), "state": {},
        "aux": {"error_map": (B, H', W') fused patch errors, "flow_pred", "flow"}, "pred", "target"}.
        """
        if flow is None:
            if torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.compiler.is_compiling():
                raise ConfigError(
                    "MAAM-Net takes optical flow as a graph input: pass flow=(B, 1, H, W, 2) "
                    "(see model.side_inputs); it cannot be computed inside the graph"
                )
            flow = self.host_inputs(frames)["flow"]
        x = self.frame_input(frames)
        target_flow = self.flow_target(flow)
        out = self(x)
        e = self.errors(x, out, target_flow)
        return {
            "scores": {"pscd": e["fused"], "pscd_app": e["app"], "pscd_mot": e["mot"]},
            "state": {},
            "aux": {"error_map": e["map"], "flow_pred": out["flow"], "flow": target_flow},
            "pred": out["recon"],
            "target": x,
        }


class FlowClipDataset(Dataset):
    """A ClipDataset whose items also carry the provider's flow: {"frames": uint8 (N, H, W, C),
    "flow": float32 (N−1, H, W, 2)}.

    Flows of in-memory datasets are computed once per video (up to FLOW_CACHE_LIMIT_BYTES), else per
    item; either way they are the same numbers the evaluator and the runtime compute.
    """

    def __init__(self, base: ClipDataset, provider: FlowProvider, progress: bool = True) -> None:
        self.base = base
        self.provider = provider
        self.cache = base.cache  # make_loader: in-memory → in-process loading
        self.flows: Optional[list[np.ndarray]] = None
        if base.cache is not None:
            s = base.spec
            need = sum(max(len(v) - 1, 0) for v in base.cache) * s.height * s.width * 2 * 4
            if need <= FLOW_CACHE_LIMIT_BYTES:
                from vadedge.progress import progress_bar

                self.flows = [
                    provider.video_flow(v)
                    for v in progress_bar(
                        base.cache, total=len(base.cache), desc=f"optical flow ({provider.name})", enabled=progress
                    )
                ]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip = self.base[i]
        if self.flows is not None:
            vi, start = self.base.index[i]
            flow = self.flows[vi][start : start + self.base.clip_length - 1]
        else:
            flow = self.provider.clip_flow(clip.numpy())
        return {"frames": clip, "flow": torch.from_numpy(np.ascontiguousarray(flow))}


class MAAMTask:
    """Training: L_app (MSE) + λm·L_mot (L1) + α·entropy + β·latent; PSCD scales tracked in eval mode.

    Every `scale_every` steps the batch is re-run in eval mode (no dropout, BN running stats, no
    gradient) and the mean worst-patch error of each branch updates `model.pscd_scale` by an EMA —
    the typical score of a normal frame, used to balance the branches when `pscd_normalize` is set.
    """

    def __init__(
        self, model: MAAMNet, train_cfg: dict, generator: Optional[torch.Generator] = None, **_: object
    ) -> None:
        self.model = model
        self.cfg = train_cfg
        if train_cfg["latent_form"] not in LATENT_FORMS:
            raise ConfigError(f"latent_form must be one of {LATENT_FORMS}, got {train_cfg['latent_form']!r}")
        self.steps = 0
        self.scale_seen = False

    def state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def make_loader(self, dataset: ClipDataset, batch_size: int, seed: int, workers: Optional[int]):
        """Clips with their flow (computed once by the model's provider), shuffled and seeded."""
        return make_loader(
            FlowClipDataset(dataset, self.model.flow_provider), batch_size, shuffle=True, seed=seed, workers=workers
        )

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        m, c = self.model, self.cfg
        x = m.frame_input(batch["frames"])
        flow = m.flow_target(batch["flow"])
        out = m(x)
        l_app = F.mse_loss(out["recon"], x)
        l_mot = F.l1_loss(out["flow"], flow)
        l_spa = entropy_loss(out["w"])
        l_lat = latent_loss(out["z_hat"], out["z"], c["zeta"], c["latent_form"])
        loss = l_app + c["lambda_motion"] * l_mot + c["alpha"] * l_spa + c["beta"] * l_lat
        with torch.no_grad():
            items = (out["w"] > 0).sum(-1).float().mean().item()
            cos = cosine(out["z_hat"], out["z"]).mean().item()
        return loss, {
            "loss": loss.item(),
            "app": l_app.item(),
            "mot": l_mot.item(),
            "spa": l_spa.item(),
            "lat": l_lat.item(),
            "items": items,
            "cos": cos,
        }

    @torch.no_grad()
    def update_scale(self, batch: dict[str, torch.Tensor]) -> None:
        m = self.model
        was_training = m.training
        m.eval()
        x = m.frame_input(batch["frames"])
        out = m(x)
        flow = m.flow_target(batch["flow"])
        e = pscd(appearance_error(out["recon"], x), motion_error(out["flow"], flow), m.pscd_cfg, None)
        m.train(was_training)
        new = torch.stack([e["app"].mean(), e["mot"].mean()]).clamp_min(EPS)
        mom = float(self.cfg["scale_momentum"])
        # first update overwrites the placeholder ones; a resumed run (scale loaded) continues the EMA
        first = not self.scale_seen and bool(m.pscd_scale.eq(1.0).all())
        m.pscd_scale.copy_(new if first else mom * m.pscd_scale + (1.0 - mom) * new)
        self.scale_seen = True

    def training_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        if self.steps % int(self.cfg["scale_every"]) == 0:
            self.update_scale(batch)
        self.steps += 1
        return self.losses(batch)


PAPER_FLOW = {"name": "dis", "preset": "ultrafast", "finest_scale": 1}


# The paper code's Ped2 patch, 30×20 px of a 240×360 frame, as fractions of the frame (a person).
PED2_PERSON = [0.125, 0.0556]


def _presets() -> dict[str, dict]:
    """`paper`: Ped2 setting (240×360 gray, N = 500, the code's PSCD constants in pixels); edge
    presets: gray frames of MNAD's edge sizes (edge-s 128×192 keeps Ped2's 2:3 aspect), the same
    person-sized patch relative to the frame (so `--input-size` keeps it), stride = a quarter of
    the patch, ψ = 0.5 on normalised branch errors."""
    model = {
        "height": 240,
        "width": 360,
        "color": "gray",
        "width_mult": 1.0,
        "memory_size": 500,
        "shrink_lambda": None,  # None → 1/N
        "dropout": 0.3,
        "flow": dict(PAPER_FLOW),
        "pscd_patch": [30, 20],
        "pscd_stride": [8, 5],
        "pscd_psi": round(10 / 11, 4),
        "pscd_normalize": False,
    }
    train = {
        "lr": 2e-5,
        "batch_size": 15,
        "epochs": 50,
        "weight_decay": 0.0,
        "lambda_motion": 2.0,
        "alpha": 3e-4,
        "beta": 1e-3,
        "zeta": 0.1,
        "latent_form": "tolerance",
        "scale_every": 10,
        "scale_momentum": 0.9,
    }
    presets = {"paper": {"model": model, "train": train}}
    edge = {  # name: ((height, width), width multiplier, epochs, lr) — sizes as MNAD's edge presets
        "edge-xs": ((96, 96), 0.125, 30, 1e-3),
        "edge-s": ((128, 192), 0.25, 20, 1e-3),
        "edge-m": ((192, 192), 0.5, 10, 5e-4),
    }
    for name, ((h, w), width, epochs, lr) in edge.items():
        presets[name] = {
            "model": {
                **model,
                "height": h,
                "width": w,
                "width_mult": width,
                "pscd_patch": list(PED2_PERSON),
                "pscd_stride": [0.25, 0.25],
                "pscd_psi": 0.5,
                "pscd_normalize": True,
            },
            "train": {**train, "lr": lr, "batch_size": 8, "epochs": epochs},
        }
    return presets


@register_model(
    "maam-net",
    task=MAAMTask,
    presets=_presets(),
    description="MAAM-Net: 1 frame → frame + optical flow, hard-shrinkage memory, PSCD patch score",
)
def build_maam_net(cfg: dict) -> MAAMNet:
    return MAAMNet(cfg)
