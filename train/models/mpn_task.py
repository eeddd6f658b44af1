"""MPN training: the three stages through the generic trainer, and the K-shot episode loader.

`pretrain` (backbone, frame loss only, DPU bypassed), `dpu` (end to end with Eq. 3; the default,
= the authors' Train.py) and `meta` (second-order Meta-SGD on K-shot episodes from one video under
a random scene shift; only θ and α learn, the frozen part runs without gradients).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from vadedge.errors import ConfigError, DataError

from ..data import ClipDataset, make_loader
from ..meta import meta_batch_loss
from .mpn_model import MPN
from .mpn_shifts import check_kinds, sample_shift

STAGES = ("pretrain", "dpu", "meta")


class EpisodeLoader:
    """Meta-training batches: `episodes` K-shot episodes, each from a different video when possible.

    An episode = 2K distinct clips of one video, all under one scene shift drawn from `shifts`;
    K go to the support set (inner step), K to the query set (outer loss). Yields
    {"support": uint8 (E, K, N, H, W, C), "query": same}. Seeded; each epoch draws new episodes.
    """

    def __init__(
        self, dataset: ClipDataset, episodes: int, shots: int, batches: int, shifts: list[str], seed: int
    ) -> None:
        self.dataset, self.episodes, self.shots, self.batches = dataset, episodes, shots, batches
        self.shifts = check_kinds(shifts) or ["none"]
        by_video: dict[int, list[int]] = {}
        for i, (vi, _) in enumerate(dataset.index):
            by_video.setdefault(vi, []).append(i)
        self.by_video = {v: idx for v, idx in by_video.items() if len(idx) >= 2 * shots}
        if not self.by_video:
            raise DataError(
                f"meta-training needs a video with at least {2 * shots} clips "
                f"({2 * shots + dataset.clip_length - 1} frames)"
            )
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.batches

    def _episode(self, video: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.choice(self.by_video[video], size=2 * self.shots, replace=False)
        clips = np.stack([self.dataset[int(i)].numpy() for i in idx])
        shift = sample_shift(str(self.rng.choice(self.shifts)), self.rng)
        clips = shift.apply(clips.reshape(-1, *clips.shape[2:])).reshape(clips.shape)
        return clips[: self.shots], clips[self.shots :]

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

    def __init__(
        self,
        model: MPN,
        train_cfg: dict,
        generator: Optional[torch.Generator] = None,
        stage: Optional[str] = None,
        **_: object,
    ) -> None:
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
        return EpisodeLoader(
            dataset, batch_size, int(self.cfg["shots"]), int(batches), list(self.cfg["episode_shifts"]), seed
        )

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
        outer, inner = meta_batch_loss(
            m.adaptation_loss, params, alphas, episodes, second_order=bool(self.cfg["second_order"])
        )
        with torch.no_grad():  # the query loss without adaptation: outer < before means adaptation helps
            before = torch.stack([m.adaptation_loss(params, q) for _, q in episodes]).mean()
        mean_alpha = torch.cat([a.detach().abs().flatten() for a in alphas.values()]).mean()
        return outer, {
            "loss": outer.item(),
            "inner": inner.item(),
            "query_unadapted": before.item(),
            "alpha_abs_mean": mean_alpha.item(),
        }
