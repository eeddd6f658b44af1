"""MPN (Lv et al., CVPR 2021), registered as `mpn`: presets and registration.

The network is `mpn_model.MPN`, the prototype unit `mpn_dpu`, the training stages `mpn_task`,
scene shifts `mpn_shifts`; docs/models/mpn.md explains them.
"""

from __future__ import annotations

from ..registry import register_model
from .mpn_model import MPN, AdaptedMPN, alpha_key  # noqa: F401  (re-exported)
from .mpn_task import STAGES, EpisodeLoader, MPNTask, stage_value  # noqa: F401  (re-exported)


def _mpn_presets() -> dict[str, dict]:
    """`paper` = the published setting (code where the paper is silent); edge presets as MNAD's."""
    base_model = {
        "height": 256,
        "width": 256,
        "color": "rgb",
        "frames": 4,
        "width_mult": 1.0,
        "batchnorm": False,  # the authors' code removes every BatchNorm
        "prototypes": 10,
        "dpu_tap": 1,  # full-resolution tap (Table 5: best)
        "score_weight": 0.5,  # S = S_fra + λs·S_fea, λs = 1 → equal weights after min-max
        "feature_score": "mse",  # paper: S_fea = L_c; "psnr" = the code's Test.py
        "lambda_feature": 1.0,
        "lambda_diversity": 0.01,  # λ1, λ2 (paper)
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
            "model": {
                **base_model,
                "height": h,
                "width": w,
                "width_mult": width,
                "color": "gray",
                "batchnorm": True,
                "alpha_init": 1e-2,
            },
            "train": {
                **base_train,
                "epochs": {"pretrain": 8, "dpu": 6, "meta": 25},
                "lr": {"pretrain": 1e-3, "dpu": 5e-4, "meta": 1e-4},
                "batch_size": {"pretrain": 8, "dpu": 8, "meta": 8},
            },
        }
    return presets


@register_model(
    "mpn",
    task=MPNTask,
    presets=_mpn_presets(),
    description="MPN: U-Net + dynamic prototype unit (full-resolution tap), Meta-SGD few-shot adaptation",
)
def build_mpn(cfg: dict) -> MPN:
    return MPN(cfg)
