"""Plots people would rather look at than read: ROC curves and per-video score curves with ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vadedge._optional import require


def _pyplot():
    mpl = require("matplotlib")
    mpl.use("Agg")
    return require("matplotlib.pyplot")


def plot_roc(path: Path, labels: np.ndarray, scores: dict[str, np.ndarray]) -> None:
    plt = _pyplot()
    metrics = require("sklearn.metrics")
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, s in scores.items():
        fpr, tpr, _ = metrics.roc_curve(labels, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {100 * metrics.auc(fpr, tpr):.1f} %)")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right")
    ax.set_title("frame-level ROC")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_score_curves(path: Path, videos, scores: list[np.ndarray], title: str = "") -> None:
    """One panel per video: the score over frames, anomalous ground truth shaded."""
    plt = _pyplot()
    n = len(videos)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    for ax, v, s in zip(axes.flat, videos, scores):
        x = np.arange(v.first, v.first + s.size)
        lab = v.labels.astype(bool)
        ax.fill_between(
            x,
            0,
            1,
            where=lab,
            color="tab:red",
            alpha=0.2,
            step="mid",
            transform=ax.get_xaxis_transform(),
            label="anomalous (GT)",
        )
        ax.plot(x, s, lw=1, c="tab:blue")
        ax.set_title(f"video {v.name}", fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"anomaly score per frame — {title}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
