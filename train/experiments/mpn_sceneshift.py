"""MPN few-shot scene-shift experiment (issue 3): does K-shot adaptation help on a new "camera"?

Only Ped2 is at hand, so a new scene is simulated by a shift (`vadedge.train.models.mpn_shifts`):
1. Train (unless --meta is given) on DATA/training: `pretrain` and `dpu` on the plain frames, then
   `meta` on K-shot episodes, each under a random shift from the checkpoint's `episode_shifts`
   (default: none, crop, flip, scale, brightness_contrast, noise — blur is held out).
2. Test on DATA/testing with every video under the held-out --test-shift (default blur:1.5). For
   each K: adapt on the first K clips of the video (one Meta-SGD step with the learned α, timed),
   score the rest. References: the meta checkpoint on unshifted video (K = 0) and the `dpu`
   checkpoint (no meta-training) under the shift (K = 0).
3. AUC, paper protocol: all K on the same frames (the first clip_length − 1 + max K of every video
   dropped) so differences are due to adaptation only; also the MPN code's protocol (drop
   clip_length − 1 + K, frame sets differ per K). Streaming protocol: calibrated on DATA/training
   videos under the same shift with the same K adaptation (a new camera calibrates on its own
   normal footage). Mean PSNR of normal vs anomalous frames is reported for the diagnosis.

Writes OUT/sceneshift.json and OUT/sceneshift.md. Run:
    python -m vadedge.train.experiments.mpn_sceneshift --data ../shared/datasets/ped2 --out runs/mpn-shift
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vadedge.commands._logging import DEFAULT, QUIET, console_logging
from vadedge.datasets import Split, open_split
from vadedge.errors import ConfigError, VadedgeError
from vadedge.progress import Progress
from vadedge.runtime.runner import StreamRunner
from vadedge.scoring import fuse

from ..checkpoint import Checkpoint, load_checkpoint
from ..evaluate import VideoScores, calibrate, paper_scores, summarise
from ..models.mpn_shifts import Shift, parse_shift
from ..trainer import train

logger = logging.getLogger(__name__)

STAGES = ("pretrain", "dpu", "meta")


def train_stages(
    data: str | Path,
    out: Path,
    *,
    preset: str = "edge-s",
    epochs: Optional[dict] = None,
    batch_size: Optional[int] = None,
    model_overrides: Optional[dict] = None,
    seed: int = 0,
    threads: Optional[int] = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Run pretrain → dpu → meta with --init chaining; returns {stage: checkpoint dir}."""
    dirs: dict[str, Path] = {}
    prev: Optional[Path] = None
    for stage in STAGES:
        dirs[stage] = out / stage
        summary = train(
            "mpn",
            data,
            dirs[stage],
            preset=preset,
            stage=stage,
            init=prev,
            seed=seed,
            epochs=(epochs or {}).get(stage),
            batch_size=batch_size,
            model_overrides=model_overrides,
            threads=threads,
            progress=progress,
        )
        Progress(logger, progress).info(f"[{stage}] {summary.format()}")
        prev = dirs[stage]
    return dirs


@dataclass
class Condition:
    """One row of the table: a checkpoint, a shift and K."""

    label: str
    ckpt: Checkpoint
    shift: Shift
    k: int
    # Controls — where θ' comes from: None = the scored video's own clips; "unshifted" = the same video
    # without the shift (is the step shift-specific?); "next-video" = the next test video (video-specific?).
    adapt_from: Optional[str] = None

    @property
    def adapted_on(self) -> Optional[str]:
        """The table's description of a control's adaptation source (None for an ordinary row)."""
        return {None: None, "unshifted": "same video under none", "next-video": "next test video"}[self.adapt_from]


def _load(split: Split, ckpt: Checkpoint, shift: Shift) -> list[tuple[str, np.ndarray, Optional[np.ndarray]]]:
    return [(v.name, shift.apply(v.load(ckpt.model.spec)), v.labels) for v in split.videos]


def score_videos(
    ckpt: Checkpoint, videos: list, k: int, adapt_frames: Optional[list[np.ndarray]] = None
) -> tuple[list[VideoScores], list[float]]:
    """Adapt each video on its first k clips (timed), score the rest; VideoScores start at clip k.

    `adapt_frames[i]`, when given, replaces video i's frames as the source of the k adaptation clips.
    """
    model = ckpt.model
    out, seconds = [], []
    for i, (name, frames, labels) in enumerate(videos):
        t0 = time.perf_counter()
        scorer = model.adapt_stream(frames if adapt_frames is None else adapt_frames[i], k)
        seconds.append(time.perf_counter() - t0)
        comps = StreamRunner.for_torch(scorer, ckpt.state).score_frames(frames[k:])
        first = model.clip_length - 1 + k
        out.append(VideoScores(name, first, comps, labels[first:] if labels is not None else None))
    return out, seconds


def trim(videos: list[VideoScores], first: int) -> list[VideoScores]:
    """The same videos restricted to frames ≥ `first` (a common frame set across K)."""
    return [
        VideoScores(
            v.name,
            first,
            {c: x[first - v.first :] for c, x in v.components.items()},
            v.labels[first - v.first :] if v.labels is not None else None,
        )
        for v in videos
    ]


def _psnr_means(videos: list[VideoScores]) -> dict[str, float]:
    labels = np.concatenate([v.labels for v in videos]).astype(bool)
    p = np.concatenate([v.components["psnr"] for v in videos])
    return {
        "psnr_normal": float(p[~labels].mean()) if (~labels).any() else float("nan"),
        "psnr_anomalous": float(p[labels].mean()) if labels.any() else float("nan"),
    }


def evaluate_conditions(
    conditions: Sequence[Condition], data: str | Path, *, streaming: bool = True, progress: bool = True
) -> list[dict]:
    """Score every condition on DATA/testing (and DATA/training for streaming calibration)."""
    test, train_split = open_split(data, "testing", require_labels=True), open_split(data, "training")
    kmax = max(c.k for c in conditions)
    cache: dict[tuple, list] = {}

    def videos(split: Split, ckpt: Checkpoint, shift: Shift) -> list:
        """`split`'s videos at the checkpoint's input size under `shift`, loaded once per (split, ckpt, shift)."""
        key = (split.name, id(ckpt), str(shift))
        if key not in cache:
            cache[key] = _load(split, ckpt, shift)
        return cache[key]

    rows = []
    for cond in conditions:
        model = cond.ckpt.model
        signs, weights = model.score_components, model.score_weights
        test_videos = videos(test, cond.ckpt, cond.shift)
        adapt_frames = None
        if cond.adapt_from == "unshifted":
            adapt_frames = [frames for _, frames, _ in videos(test, cond.ckpt, parse_shift("none"))]
        elif cond.adapt_from == "next-video":
            adapt_frames = [frames for _, frames, _ in test_videos[1:] + test_videos[:1]]
        t0 = time.time()
        scored, seconds = score_videos(cond.ckpt, test_videos, cond.k, adapt_frames)
        common = trim(scored, model.clip_length - 1 + kmax)
        row = {
            "label": cond.label,
            "shift": str(cond.shift),
            "k": cond.k,
            "auc_paper_common": summarise(common, paper_scores(common, signs, weights))["auc"],
            "auc_paper_code": summarise(scored, paper_scores(scored, signs, weights))["auc"],
            "frames_common": int(sum(v.size for v in common)),
            "adapt_seconds_mean": float(np.mean(seconds)),
            "adapt_seconds_max": float(np.max(seconds)),
            **_psnr_means(common),
        }
        if cond.adapted_on is not None:
            row["adapted_on"] = cond.adapted_on
        elif streaming:
            calib_scores, _ = score_videos(cond.ckpt, videos(train_split, cond.ckpt, cond.shift), cond.k)
            stats = calibrate(calib_scores)
            row["auc_streaming_common"] = summarise(
                common, [np.asarray(fuse(v.components, signs, weights, stats)) for v in common]
            )["auc"]
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        Progress(logger, progress).info(
            f"{cond.label:>10s} shift={row['shift']:<16s} K={cond.k:<3d} "
            f"AUC paper {100 * row['auc_paper_common']:.2f} %  "
            f"adapt {1000 * row['adapt_seconds_mean']:.0f} ms"
        )
    return rows


def format_table(rows: list[dict]) -> str:
    has_stream = any("auc_streaming_common" in r for r in rows)
    head = ["checkpoint", "shift", "K", "AUC paper (common frames)", "AUC paper (drop 4+K)"]
    head += ["AUC streaming (common)"] if has_stream else []
    head += ["PSNR normal / anomalous", "adapt s/video (mean)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        label = r["label"] + (f" (θ' from {r['adapted_on']})" if r.get("adapted_on") else "")
        cells = [
            label,
            r["shift"],
            str(r["k"]),
            f"{100 * r['auc_paper_common']:.2f}",
            f"{100 * r['auc_paper_code']:.2f}",
        ]
        if has_stream:
            cells.append(f"{100 * r['auc_streaming_common']:.2f}" if "auc_streaming_common" in r else "—")
        cells += [f"{r['psnr_normal']:.2f} / {r['psnr_anomalous']:.2f}", f"{r['adapt_seconds_mean']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(
    data: str | Path,
    out: str | Path,
    *,
    preset: str = "edge-s",
    ks: Sequence[int] = (0, 1, 5, 10),
    test_shift: str = "blur:1.5",
    meta: Optional[str | Path] = None,
    dpu: Optional[str | Path] = None,
    epochs: Optional[dict] = None,
    batch_size: Optional[int] = None,
    model_overrides: Optional[dict] = None,
    seed: int = 0,
    threads: Optional[int] = None,
    streaming: bool = True,
    progress: bool = True,
    allow_seen_shift: bool = False,
    controls: bool = False,
) -> dict:
    """The whole experiment; returns (and writes) {"rows": [...], "config": {...}}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    shift = parse_shift(test_shift)
    if meta is None:
        dirs = train_stages(
            data,
            out,
            preset=preset,
            epochs=epochs,
            batch_size=batch_size,
            model_overrides=model_overrides,
            seed=seed,
            threads=threads,
            progress=progress,
        )
        meta, dpu = dirs["meta"], dirs["dpu"]
    meta_ckpt = load_checkpoint(meta)
    if meta_ckpt.config["name"] != "mpn":
        raise ConfigError(f"{meta} is a '{meta_ckpt.config['name']}' checkpoint, not mpn")
    seen = meta_ckpt.config["train"].get("episode_shifts", [])
    if shift.kind in seen and not allow_seen_shift:
        raise ConfigError(
            f"test shift '{shift.kind}' was used in meta-training ({', '.join(seen)}); "
            f"pick another or pass --allow-seen-shift"
        )
    conditions = [Condition("meta", meta_ckpt, parse_shift("none"), 0)]
    if dpu is not None:
        conditions.append(Condition("dpu", load_checkpoint(dpu), shift, 0))
    conditions += [Condition("meta", meta_ckpt, shift, k) for k in ks]
    if controls:  # is the K = 1 step specific to the shift and to the video, or a fixed correction of θ0?
        conditions += [
            Condition("meta", meta_ckpt, shift, 1, adapt_from="unshifted"),
            Condition("meta", meta_ckpt, shift, 1, adapt_from="next-video"),
        ]
    t0 = time.time()
    rows = evaluate_conditions(conditions, data, streaming=streaming, progress=progress)
    result = {
        "rows": rows,
        "config": {
            "data": str(data),
            "meta": str(meta),
            "dpu": str(dpu) if dpu else None,
            "test_shift": str(shift),
            "meta_shifts": seen,
            "ks": list(ks),
            "threads": torch.get_num_threads(),
            "seconds": round(time.time() - t0, 1),
        },
    }
    (out / "sceneshift.json").write_text(json.dumps(result, indent=1))
    (out / "sceneshift.md").write_text(
        f"MPN scene-shift experiment: meta-trained under {', '.join(seen)}; tested under {shift}.\n\n"
        + format_table(rows)
        + "\n"
    )
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m vadedge.train.experiments.mpn_sceneshift",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="dataset root (Ped2 layout)")
    p.add_argument("--out", required=True, help="output folder (stage checkpoints unless --meta, tables)")
    p.add_argument("--preset", default="edge-s")
    p.add_argument("--k", type=int, nargs="+", default=[0, 1, 5, 10], help="shots to evaluate")
    p.add_argument("--test-shift", default="blur:1.5", help="held-out shift, e.g. blur:1.5 (see mpn_shifts)")
    p.add_argument("--meta", default=None, help="use this meta-stage checkpoint instead of training")
    p.add_argument("--dpu", default=None, help="dpu-stage checkpoint for the no-meta reference row")
    for stage in STAGES:
        p.add_argument(f"--epochs-{stage}", type=int, default=None, help=f"override the preset's {stage} epochs")
    p.add_argument("--input-size", default=None, metavar="HxW", help="override the preset's input size when training")
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size when training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-streaming", action="store_true", help="skip the streaming protocol (halves the time)")
    p.add_argument("--allow-seen-shift", action="store_true")
    p.add_argument(
        "--controls",
        action="store_true",
        help="add K=1 rows whose θ' comes from the unshifted clips of the same video and from the "
        "next test video (diagnoses a data-independent step)",
    )
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    epochs = {s: getattr(a, f"epochs_{s}") for s in STAGES if getattr(a, f"epochs_{s}") is not None}
    overrides = None
    if a.input_size:
        try:
            h, w = (int(x) for x in a.input_size.lower().split("x"))
        except ValueError:
            p.error(f"--input-size: expected HxW such as 128x128, got {a.input_size!r}")
        overrides = {"height": h, "width": w}
    try:
        with console_logging(QUIET if a.quiet else DEFAULT):
            result = run(
                a.data,
                a.out,
                preset=a.preset,
                ks=a.k,
                test_shift=a.test_shift,
                meta=a.meta,
                dpu=a.dpu,
                epochs=epochs,
                batch_size=a.batch_size,
                model_overrides=overrides,
                seed=a.seed,
                threads=a.threads,
                streaming=not a.no_streaming,
                progress=not a.quiet,
                allow_seen_shift=a.allow_seen_shift,
                controls=a.controls,
            )
    except VadedgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result["rows"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
