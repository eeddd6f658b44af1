"""Evaluation: score test videos in stream order (memory carried and gated per frame), two protocols.

* paper: per-video min-max of PSNR and feature distance, fused with the paper's λ, first frames
  without a prediction dropped, pooled frame-level AUC (+ per-video macro AUC, EER) — what the
  papers' scripts compute. Not causal: it needs each video's future.
* streaming: no future frames. Each component is normalised with robust statistics (median,
  1.4826·MAD) measured on the normal *training* footage, fused with the same λ, optionally smoothed
  by a causal EMA — the number a live deployment gets.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vadedge.datasets import Split, open_split
from vadedge.errors import ConfigError
from vadedge.metrics import RobustStats, ema, equal_error_rate, frame_auc, has_both_classes, minmax_normalise
from vadedge.progress import progress_bar

from .checkpoint import Checkpoint, load_checkpoint
from .protocols import AdaptableModel, HostInputs

PROTOCOLS = ("paper", "streaming", "both")


@dataclass
class VideoScores:
    """Raw per-frame score components of one video; frames before `first` have no prediction."""

    name: str
    first: int
    components: dict[str, np.ndarray]
    labels: Optional[np.ndarray] = None  # labels of the scored frames only

    @property
    def size(self) -> int:
        return next(iter(self.components.values())).size


@torch.inference_mode()
def score_frames(model, state: dict[str, torch.Tensor], frames: np.ndarray) -> dict[str, np.ndarray]:
    """Run one stream over uint8 frames (N, H, W, C) from an unbatched initial `state`, carrying the state.

    Returns each score component for every frame that has a full clip (from frame clip_length − 1 on).
    """
    st = {k: v.unsqueeze(0) for k, v in state.items()}
    n_clip = model.clip_length
    video = torch.from_numpy(frames)
    values: dict[str, list[float]] = {k: [] for k in model.score_components}
    host = model.host_inputs if isinstance(model, HostInputs) else None  # e.g. MAAM-Net's flow, computed outside
    for t in range(n_clip - 1, len(frames)):
        clip = video[t - n_clip + 1:t + 1].unsqueeze(0)
        out = model.stream_step(clip, st, **(host(clip) if host is not None else {}))
        st = out["state"]
        for k in values:
            values[k].append(out["scores"][k].item())
    return {k: np.asarray(v) for k, v in values.items()}


def score_split(ckpt: Checkpoint, split: Split, progress: bool = True, desc: str = "scoring",
                adapt_k: int = 0) -> list[VideoScores]:
    """Score every video of a split as its own stream, each starting from the checkpoint's state.

    adapt_k > 0 (models with `adapt_stream`, e.g. MPN): each stream first adapts on its first
    adapt_k clips and is scored from clip adapt_k on, so its first clip_length − 1 + adapt_k frames
    get no score (MPN's K-shot protocol).
    """
    model = ckpt.model
    out = []
    for video in progress_bar(split.videos, total=len(split.videos), desc=desc, enabled=progress):
        frames = video.load(model.spec)
        scorer = model.adapt_stream(frames, adapt_k) if adapt_k else model
        comps = score_frames(scorer, ckpt.state, frames[adapt_k:])
        first = model.clip_length - 1 + adapt_k
        labels = video.labels[first:] if video.labels is not None else None
        out.append(VideoScores(video.name, first, comps, labels))
    return out


def paper_scores(videos: list[VideoScores], signs: dict[str, int], weights: dict[str, float]) -> list[np.ndarray]:
    """Σ_c w_c·g(c) with g = per-video min-max, flipped (1 − g) for components where larger = normal.

    For MNAD this is Eq. 16–17: S_t = λ(1 − g(PSNR)) + (1 − λ) g(D).
    """
    def oriented(x: np.ndarray, sign: int) -> np.ndarray:
        g = minmax_normalise(x)
        return g if sign > 0 else 1.0 - g

    return [sum(w * oriented(v.components[c], signs[c]) for c, w in weights.items() if w) for v in videos]


@dataclass
class Calibration:
    """Robust statistics of each score component on normal footage (used by the streaming protocol)."""

    stats: dict[str, RobustStats]
    frames: int

    def fuse(self, v: VideoScores, signs: dict[str, int], weights: dict[str, float]) -> np.ndarray:
        """Σ_c w_c · sign_c · z_c: larger = more anomalous, causal (fixed statistics)."""
        return sum(w * signs[c] * self.stats[c].z(v.components[c]) for c, w in weights.items() if w)

    def to_dict(self) -> dict:
        return {"stats": {k: asdict(v) for k, v in self.stats.items()}, "frames": self.frames}


def calibrate(videos: list[VideoScores]) -> Calibration:
    names = videos[0].components.keys()
    stats = {c: RobustStats.fit(np.concatenate([v.components[c] for v in videos])) for c in names}
    return Calibration(stats, int(sum(v.size for v in videos)))


def summarise(videos: list[VideoScores], scores: list[np.ndarray]) -> dict:
    labels = np.concatenate([v.labels for v in videos])
    pooled = np.concatenate(scores)
    per_video = {v.name: frame_auc(v.labels, s) for v, s in zip(videos, scores) if has_both_classes(v.labels)}
    return {
        "auc": frame_auc(labels, pooled),
        "macro_auc": float(np.mean(list(per_video.values()))) if per_video else float("nan"),
        "eer": equal_error_rate(labels, pooled),
        "per_video_auc": per_video,
        "frames": int(labels.size),
        "anomalous_frames": int(labels.sum()),
    }


@dataclass
class EvalResult:
    model_dir: str
    data: str
    protocols: dict = field(default_factory=dict)
    seconds: float = 0.0
    fps: float = 0.0
    calibration: Optional[dict] = None
    adapt_k: int = 0  # few-shot adaptation clips per stream (MPN)

    def format(self) -> str:
        rows = [("", *self.protocols.keys())]
        for key, label in (("auc", "AUC (pooled)"), ("macro_auc", "AUC (per-video mean)"), ("eer", "EER")):
            rows.append((label, *(f"{100 * r[key]:.2f} %" for r in self.protocols.values())))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        any_r = next(iter(self.protocols.values()))
        lines.append(f"{any_r['frames']} scored frames ({any_r['anomalous_frames']} anomalous), "
                     f"{self.fps:.1f} frames/s scoring")
        return "\n".join(lines)


def evaluate(model_dir: str | Path, data: str | Path, *, protocol: str = "both", out: Optional[str | Path] = None,
             smoothing: float = 1.0, calib_videos: Optional[int] = None, threads: Optional[int] = None,
             progress: bool = True, plots: bool = True, adapt_k: int = 0) -> EvalResult:
    """Evaluate a checkpoint on DATA/testing (labels required); write results.json, scores.csv and plots to `out`.

    `adapt_k`: few-shot adaptation per stream (test and calibration videos) for models that support it.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if threads:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(model_dir)
    if adapt_k and not isinstance(ckpt.model, AdaptableModel):
        raise ConfigError(f"--adapt-k: model '{ckpt.config['name']}' does not support few-shot adaptation")
    test = open_split(data, "testing", require_labels=True)
    signs, weights = ckpt.model.score_components, ckpt.model.score_weights
    t0 = time.time()
    videos = score_split(ckpt, test, progress, "scoring test videos", adapt_k)
    scored = sum(v.size for v in videos)
    fps = scored / max(time.time() - t0, 1e-9)
    result = EvalResult(str(model_dir), str(data), fps=fps, adapt_k=adapt_k)
    per_frame: dict[str, list[np.ndarray]] = {}
    if protocol in ("paper", "both"):
        per_frame["paper"] = paper_scores(videos, signs, weights)
        result.protocols["paper"] = summarise(videos, per_frame["paper"])
    if protocol in ("streaming", "both"):
        train_split = open_split(data, "training")
        if calib_videos:
            train_split.videos = train_split.videos[:calib_videos]
        calib = calibrate(score_split(ckpt, train_split, progress, "calibrating on training videos", adapt_k))
        result.calibration = calib.to_dict()
        per_frame["streaming"] = [ema(calib.fuse(v, signs, weights), smoothing) for v in videos]
        result.protocols["streaming"] = {**summarise(videos, per_frame["streaming"]), "smoothing": smoothing}
    result.seconds = time.time() - t0
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(asdict(result), indent=1))
        _write_scores_csv(out / "scores.csv", videos, per_frame)
        if plots:
            from .plots import plot_roc, plot_score_curves

            labels = np.concatenate([v.labels for v in videos])
            plot_roc(out / "roc.png", labels, {k: np.concatenate(s) for k, s in per_frame.items()})
            for name, scores in per_frame.items():
                plot_score_curves(out / f"scores_{name}.png", videos, scores, title=f"{name} protocol")
    return result


def _write_scores_csv(path: Path, videos: list[VideoScores], per_frame: dict[str, list[np.ndarray]]) -> None:
    names = list(videos[0].components)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "frame", "label", *names, *[f"score_{k}" for k in per_frame]])
        for i, v in enumerate(videos):
            for j in range(v.size):
                w.writerow([v.name, v.first + j, int(v.labels[j]), *[f"{v.components[c][j]:.6g}" for c in names],
                            *[f"{per_frame[k][i][j]:.5f}" for k in per_frame]])
