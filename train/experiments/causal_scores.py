"""Causal scores that survive deployment (issue 14 item 3): measurements on a bundle, through the SDK.

Two phases, so the expensive model pass runs once:

* ``extract``: every video of DATA/training (frame strides 1, 2, 3) and DATA/testing (stride 1) is
  run through ``vadedge.Detector`` as its own fresh stream (what ``vadedge run`` does per source).
  Per scored frame it caches the graph's components (psnr, feature_distance), the SDK's own causal
  score (calibrated z, bundle weights, EMA) and the graph's ``error_map`` (the per-pixel squared
  error average-pooled 4×4, so one cell = 4 px) to ``CACHE/<split>-s<stride>/<video>.npz``.
  Videos already cached are skipped (the pass can be resumed).
* ``analyse``: builds candidate scores from the cached arrays. Every statistic, weight and
  threshold is fitted on normal (training) footage only; test labels are used only to *report*
  AUCs. Prints a markdown table (and writes it as JSON with ``--json``).

    python -m vadedge.train.experiments.causal_scores extract --data ../shared/datasets/ped2 \\
        --cache /tmp/causal/cache
    python -m vadedge.train.experiments.causal_scores analyse --data ../shared/datasets/ped2 \\
        --cache /tmp/causal/cache --json /tmp/causal/causal.json

Components added here (all computable from the error map inside the graph, or on the host):

* ``local<k>``: mean squared error over k×k-pixel windows (box filter, stride 4 px), max over the
  frame — MAAM-Net's PSCD idea; reported as −10·log10 (a "local PSNR" in dB, so its spread is not
  dominated by a few huge values) with sign −1 like psnr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)

CELL = 4  # pixels per error-map cell (export.torch_graph.ERROR_MAP_STRIDE)
WINDOWS = (8, 16, 32)  # local-error window sizes in pixels


# ---------------------------------------------------------------------------------------------- extract
def extract(data: Path, cache: Path, bundle: Optional[str], threads: int, jobs: Sequence[tuple[str, int]]) -> None:
    """Run each (split, stride) job's videos through the Detector, one fresh stream per video."""
    from vadedge.runtime.detector import Detector

    det = Detector.load(bundle, backend="onnxruntime", device="cpu", threads=threads, heatmap=True)
    logger.info("bundle: %s", det.describe())
    for split, stride in jobs:
        out_dir = cache / f"{split}-s{stride}"
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, load in source_videos(data, split):
            path = out_dir / f"{name}.npz"
            if path.exists():
                continue
            t0 = time.perf_counter()
            stream = det.stream(f"{split}/{name}/s{stride}")
            rows: dict[str, list] = {k: [] for k in ("frame", "psnr", "feature_distance", "score", "raw")}
            maps: list[np.ndarray] = []
            frames, labels = load()
            for i, frame in enumerate(frames):
                if i % stride:
                    continue
                r = stream.process(frame)
                if r.warmup:
                    continue
                rows["frame"].append(i)
                rows["psnr"].append(r.components["psnr"])
                rows["feature_distance"].append(r.components["feature_distance"])
                rows["score"].append(r.score)
                rows["raw"].append(r.raw_score)
                if r.heatmap is None:
                    raise RuntimeError(f"bundle gives no error map for {split}/{name}: export it with error_map")
                maps.append(r.heatmap)
            stream.finish()
            arrays: dict[str, Any] = {
                k: np.asarray(v, dtype=np.int64 if k == "frame" else np.float64) for k, v in rows.items()
            }
            if labels is not None:
                arrays["labels"] = np.asarray(labels)[arrays["frame"]].astype(np.int64)
            arrays["error_map"] = np.stack(maps).astype(np.float32)
            np.savez(path, **arrays)
            logger.info("%s s%d %s: %d frames in %.1f s", split, stride, name, len(maps), time.perf_counter() - t0)


PSEUDO_VIDEOS = ("02", "04", "06", "08", "10", "12", "14", "16")  # normal videos that get a pasted object
PSEUDO_FRAMES, PSEUDO_START = 120, 50
PSEUDO_KINDS = ("shape", "speed", "direction")


def pseudo_anomaly(frames: Sequence[np.ndarray], kind: str, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Paste a moving abnormal object into normal frames from PSEUDO_START on (labels: object in view).

    Kinds as vadedge.synthetic's generator, at Ped2's scale (pedestrians ≈ 12×30 px, ≈ 1.5 px/frame):
    "shape" a car-like box moving along the walkway at walking speed, "speed" a pedestrian-sized
    blob 5× too fast, "direction" a pedestrian-sized blob crossing the lawn sideways.
    """
    import cv2

    rng = np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    shade = int(rng.integers(20, 70))
    if kind == "shape":
        size, x, y, vx, vy = (40, 26), rng.uniform(0.3, 0.7) * w, -30.0, 0.0, 1.5
    elif kind == "speed":
        size, x, y, vx, vy = (7, 16), rng.uniform(0.3, 0.7) * w, h + 20.0, 0.0, -7.5
    else:
        size, x, y, vx, vy = (7, 16), -10.0, rng.uniform(0.3, 0.7) * h, 2.5, 0.0
    out, labels = [], np.zeros(len(frames), np.uint8)
    for t, f in enumerate(frames):
        img = f.copy()
        if t >= PSEUDO_START:
            k = t - PSEUDO_START
            cx, cy = int(round(x + vx * k)), int(round(y + vy * k))
            if -size[0] <= cx <= w + size[0] and -size[1] <= cy <= h + size[1]:
                if kind == "shape":
                    cv2.rectangle(img, (cx - size[0], cy - size[1]), (cx + size[0], cy + size[1]), (shade,) * 3, -1)
                    cv2.rectangle(img, (cx - size[0], cy - size[1]), (cx + size[0], cy + size[1]), (200,) * 3, 2)
                else:
                    cv2.ellipse(img, (cx, cy), size, 0, 0, 360, (shade,) * 3, -1)
                labels[t] = 1
        out.append(img)
    return out, labels


Loader = Callable[[], tuple[list[np.ndarray], Optional[np.ndarray]]]  # -> frames, per-frame labels or None


def _frames(frames: np.ndarray) -> tuple[list[np.ndarray], Optional[np.ndarray]]:
    return list(frames), None


def _video_frames(video: Any) -> tuple[list[np.ndarray], Optional[np.ndarray]]:
    return list(video.iter_frames()), None


def _pseudo_frames(video: Any, i: int) -> tuple[list[np.ndarray], Optional[np.ndarray]]:
    frames = [video.read_frame(j) for j in range(PSEUDO_FRAMES)]
    return pseudo_anomaly(frames, PSEUDO_KINDS[i % len(PSEUDO_KINDS)], seed=i)


def source_videos(data: Path, split: str) -> list[tuple[str, Loader]]:
    """(name, loader of frames and labels) of a job's videos (test labels are attached later).

    split: a dataset split; "pseudo" = PSEUDO_VIDEOS of the training split, first PSEUDO_FRAMES
    frames, with a pasted object (labelled normal footage for choosing a design without test
    labels); "scene" = two normal videos of vadedge.synthetic's generated scene at Ped2's frame size
    (a camera the shipped model never saw, for the degenerate-component check).
    """
    from vadedge.datasets import open_split

    if split == "scene":
        from vadedge.synthetic import iter_synthetic_videos

        vids = list(iter_synthetic_videos(2, 100, height=240, width=360, seed=7, anomalous=False))
        return [(f"{i + 1:02d}", partial(_frames, f)) for i, (f, _) in enumerate(vids)]
    if split == "pseudo":
        chosen = [v for v in open_split(data, "training").videos if v.name in PSEUDO_VIDEOS]
        return [(v.name, partial(_pseudo_frames, v, i)) for i, v in enumerate(chosen)]
    return [(v.name, partial(_video_frames, v)) for v in open_split(data, split).videos]


# ---------------------------------------------------------------------------------------------- cache
@dataclass
class Video:
    """Cached per-frame arrays of one stream (frames are indices into the original video)."""

    name: str
    arrays: dict[str, np.ndarray]
    labels: Optional[np.ndarray] = None  # per scored frame, test videos only
    comps: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.arrays["frame"].size)


def labels_of(v: Video) -> np.ndarray:
    if v.labels is None:
        raise ValueError(f"video {v.name} has no labels")
    return v.labels


def load_videos(cache: Path, split: str, stride: int, data: Optional[Path] = None) -> list[Video]:
    folder = cache / f"{split}-s{stride}"
    if not folder.is_dir():
        return []
    labels = {}
    if data is not None and split == "testing":
        from vadedge.datasets import open_split

        labels = {v.name: v.labels for v in open_split(data, split).videos}
    out = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        v = Video(path.stem, arrays)
        if "labels" in arrays:
            v.labels = arrays["labels"]
        elif path.stem in labels:
            v.labels = np.asarray(labels[path.stem])[arrays["frame"]].astype(int)
        v.comps = components(arrays)
        out.append(v)
    return out


def components(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's components plus the local-error candidates (the scoring core's `local_error_db`)."""
    from vadedge.scoring import local_error_db

    out = {"psnr": arrays["psnr"], "feature_distance": arrays["feature_distance"]}
    maps = arrays["error_map"]
    for px in WINDOWS:
        out[f"local{px}"] = local_error_db(maps, px // CELL)
    return out


SIGNS = {"psnr": -1, "feature_distance": 1, **{f"local{px}": -1 for px in WINDOWS}}


# ---------------------------------------------------------------------------------------------- candidates
SMOOTHING = 0.3  # the bundle's EMA
TARGET = 0.01  # the bundle's threshold policy: 1 % of normal frames over `on`
MIN_EVENT = 5  # the bundle's min_event_frames
FPS = 10.0  # Ped2's frame rate (UCSD: 10 fps), for false alarms per hour and delays in seconds
FOLDS = 4  # leave-videos-out folds over the normal videos


@dataclass(frozen=True)
class Candidate:
    """A causal score: which components, how their scale is guarded, how they are weighted.

    scale: "robust" (median / 1.4826·MAD of the pooled normal frames, as the exporter does today),
    "floor<k>" (scale ≥ k·|location|), or "cv" (cross-validated: the robust scale times the
    spread of the z-scores the component gets on normal videos it was not fitted on, leave one
    video out — a component that only looks calm on its own fitting videos gets a wider scale).
    weights: "bundle" (the manifest's), "equal" (1/n over the kept components), "inv" (∝ 1 / the
    held-out z spread) or an explicit {component: weight} mapping.
    drop: components whose held-out z spread exceeds this are dropped (the degenerate guard).
    baseline: per-stream causal location — the median of the stream's first N scored frames
    replaces the normal-footage location from frame N on (0 = off).
    """

    name: str
    comps: tuple[str, ...]
    scale: str = "robust"
    weights: object = "equal"
    drop: float = float("inf")
    baseline: int = 0


@dataclass
class Fitted:
    """A candidate's statistics and weights fitted on some normal videos."""

    stats: dict[str, tuple[float, float]]
    weights: dict[str, float]
    inflation: dict[str, float]

    def fused(self, v: Video, baseline: int = 0) -> np.ndarray:
        total = np.zeros(v.size)
        for c, w in self.weights.items():
            loc0, scale = self.stats[c]
            x = v.comps[c]
            loc = np.full(x.size, loc0)
            if baseline:
                loc[baseline:] = np.median(x[:baseline])
            total += w * SIGNS[c] * (x - loc) / scale
        return total


def robust(x: np.ndarray) -> tuple[float, float]:
    from vadedge.scoring import RobustStats

    st = RobustStats.fit(x)
    return st.location, st.scale


def heldout_inflation(videos: Sequence[Video], comp: str) -> float:
    """1.4826·MAD of z-scores of each normal video under stats fitted on the other videos (LOVO)."""
    zs = []
    for i, v in enumerate(videos):
        loc, scale = robust(np.concatenate([u.comps[comp] for j, u in enumerate(videos) if j != i]))
        zs.append((v.comps[comp] - loc) / scale)
    z = np.concatenate(zs)
    return float(1.4826 * np.median(np.abs(z - np.median(z))))


def fit(cand: Candidate, videos: Sequence[Video], bundle_weights: dict[str, float]) -> Fitted:
    """Fit a candidate on normal videos only."""
    infl = {c: heldout_inflation(videos, c) for c in cand.comps}
    kept = [c for c in cand.comps if infl[c] <= cand.drop]
    stats = {}
    for c in kept:
        loc, scale = robust(np.concatenate([v.comps[c] for v in videos]))
        if cand.scale.startswith("floor"):
            scale = max(scale, float(cand.scale[5:]) * abs(loc))
        elif cand.scale == "cv":
            scale *= max(1.0, infl[c])
        stats[c] = (loc, scale)
    if isinstance(cand.weights, dict):
        w = {c: float(cand.weights[c]) for c in kept}
    elif cand.weights == "bundle":
        w = {c: bundle_weights[c] for c in kept}
    elif cand.weights == "inv":
        w = {c: 1.0 / max(1.0, infl[c]) for c in kept}
    else:
        w = dict.fromkeys(kept, 1.0)
    total = sum(w.values())
    return Fitted(stats, {c: x / total for c, x in w.items()}, infl)


def smoothed(f: Fitted, v: Video, baseline: int) -> np.ndarray:
    from vadedge.scoring import ema

    return ema(f.fused(v, baseline), SMOOTHING)


def threshold(f: Fitted, videos: Sequence[Video], baseline: int) -> tuple[float, float]:
    from vadedge.scoring import fit_threshold

    t = fit_threshold(np.concatenate([smoothed(f, v, baseline) for v in videos]), TARGET)
    return t["on"], t["off"]


def track(score: np.ndarray, on: float, off: float) -> tuple[np.ndarray, int]:
    """Per-frame 'in a confirmed event' flags and the number of events (the runtime's EventTracker)."""
    from vadedge.scoring import EventTracker

    tr = EventTracker("x", on, off, MIN_EVENT)
    flags = np.zeros(score.size, dtype=bool)
    events = 0
    for i, s in enumerate(score):
        flags[i], started, _ = tr.update(i, i / FPS, float(s))
        events += started is not None
    return flags, events


def alarms(scores: Sequence[np.ndarray], videos: Sequence[Video], on: float, off: float) -> dict:
    """vadedge.metrics.alarm_metrics over the tracker's flags (labels all 0 for normal videos)."""
    from vadedge.metrics import alarm_metrics

    rows = []
    for s, v in zip(scores, videos):
        flags, _ = track(s, on, off)
        labels = v.labels if v.labels is not None else np.zeros(s.size, int)
        rows.append((v.name, labels, flags, 0))
    return alarm_metrics(rows, FPS)


def false_alarms(cand: Candidate, train: Sequence[Video], bw: dict[str, float]) -> dict:
    """Leave-videos-out on normal footage: fit stats, weights and threshold on the other folds."""
    alarms_n = frames = over = 0
    seconds = 0.0
    for held in np.array_split(np.arange(len(train)), FOLDS):
        fit_on = [v for i, v in enumerate(train) if i not in held]
        f = fit(cand, fit_on, bw)
        on, off = threshold(f, fit_on, cand.baseline)
        scores = [smoothed(f, train[i], cand.baseline) for i in held]
        m = alarms(scores, [train[i] for i in held], on, off)
        alarms_n += m["false_alarms"]
        seconds += m["normal_seconds"]
        frames += sum(s.size for s in scores)
        over += sum(int((s >= on).sum()) for s in scores)
    return {"fa_per_hour": alarms_n / seconds * 3600, "heldout_over": over / frames, "heldout_alarms": alarms_n}


def delays(scores: Sequence[np.ndarray], test: Sequence[Video], on: float, off: float) -> dict:
    """Detection delay per anomalous interval (from its first scored frame) and false alarms on test."""
    m = alarms(scores, test, on, off)
    nan = float("nan")
    return {
        "delay_median_frames": nan if m["delay_frames_median"] is None else m["delay_frames_median"],
        "delay_max_frames": nan if m["delay_frames_max"] is None else m["delay_frames_max"],
        "detected": m["detected"],
        "missed": m["missed"],
        "false_alarms_test": m["false_alarms"],
        "fa_per_hour_test_normal": m["false_alarms_per_hour"],
    }


def paper_auc(f: Fitted, test: Sequence[Video]) -> float:
    """The candidate's components under the paper protocol (per-video min-max, same weights)."""
    from vadedge.metrics import frame_auc, minmax_normalise

    per = []
    for v in test:
        total = np.zeros(v.size)
        for c, w in f.weights.items():
            g = minmax_normalise(v.comps[c])
            total += w * (g if SIGNS[c] > 0 else 1.0 - g)
        per.append(total)
    return frame_auc(np.concatenate([labels_of(v) for v in test]), np.concatenate(per))


def evaluate(
    cand: Candidate,
    train: Sequence[Video],
    test: Sequence[Video],
    strided: dict[int, list[Video]],
    bw: dict[str, float],
    pseudo: Sequence[Video] = (),
    scene: Sequence[Video] = (),
) -> dict:
    from vadedge.metrics import frame_auc

    f = fit(cand, train, bw)
    on, off = threshold(f, train, cand.baseline)
    labels = np.concatenate([labels_of(v) for v in test])
    scores = [smoothed(f, v, cand.baseline) for v in test]
    raw = np.concatenate([f.fused(v, cand.baseline) for v in test])
    per_video = [frame_auc(labels_of(v), s) for v, s in zip(test, scores) if 0 < labels_of(v).sum() < v.size]
    res = {
        "name": cand.name,
        "weights": f.weights,
        "stats": f.stats,
        "inflation": f.inflation,
        "on": on,
        "off": off,
        "causal_auc": frame_auc(labels, np.concatenate(scores)),
        "causal_auc_raw": frame_auc(labels, raw),
        "causal_macro_auc": float(np.mean(per_video)),
        "paper_auc": paper_auc(f, test),
        **false_alarms(cand, train, bw),
        **delays(scores, test, on, off),
    }
    if pseudo:  # the selection criterion: normal footage with pasted objects, no test label involved
        res["pseudo_auc"] = frame_auc(
            np.concatenate([labels_of(v) for v in pseudo]),
            np.concatenate([smoothed(f, v, cand.baseline) for v in pseudo]),
        )
    if scene:  # a camera the model never saw: how far normal frames land above the threshold
        sc = np.concatenate([smoothed(f, v, cand.baseline) for v in scene])
        res["scene_median"] = float(np.median(sc))
        res["scene_over"] = float(np.mean(sc >= on))
    for stride, vids in strided.items():
        ss = [smoothed(f, v, cand.baseline) for v in vids]
        res[f"s{stride}_over"] = float(np.mean(np.concatenate(ss) >= on))
        res[f"s{stride}_events"] = sum(track(x, on, off)[1] for x in ss)
    return res


def candidates() -> list[Candidate]:
    local = tuple(f"local{px}" for px in WINDOWS)
    return [
        Candidate("bundle (psnr 0.6 + fd 0.4, robust)", ("psnr", "feature_distance"), weights="bundle"),
        Candidate("psnr only", ("psnr",)),
        Candidate("feature_distance only", ("feature_distance",)),
        *[Candidate(f"{c} only", (c,)) for c in local],
        Candidate("bundle + fd scale floor 0.1·loc", ("psnr", "feature_distance"), "floor0.1", "bundle"),
        Candidate("bundle, cv scale", ("psnr", "feature_distance"), "cv", "bundle"),
        Candidate("psnr + fd, drop if held-out spread > 3, equal", ("psnr", "feature_distance"), drop=3.0),
        Candidate("psnr + local16, equal", ("psnr", "local16")),
        Candidate("psnr + local8/16/32, equal", ("psnr", *local)),
        Candidate("local8/16/32, equal", local),
        Candidate("all, drop > 3, equal", ("psnr", "feature_distance", *local), drop=3.0),
        Candidate("all, drop > 3, inv", ("psnr", "feature_distance", *local), drop=3.0, weights="inv"),
        Candidate("all, cv scale, inv", ("psnr", "feature_distance", *local), "cv", "inv"),
        Candidate("all, drop > 3, cv scale, inv", ("psnr", "feature_distance", *local), "cv", "inv", drop=3.0),
        Candidate("psnr, per-stream baseline N=10", ("psnr",), baseline=10),
        Candidate("psnr + local16, per-stream baseline N=10", ("psnr", "local16"), baseline=10),
    ]


def linear(comp: str, x: np.ndarray) -> np.ndarray:
    """A component in its non-negative energy units (dB components back to MSE)."""
    return x if comp == "feature_distance" else 10 ** (-x / 10)


def guard_report(train: Sequence[Video], scene: Sequence[Video]) -> dict:
    """Degenerate-component evidence from normal footage only, per component.

    rel_spread: robust scale / location in energy units (a distance that barely moves relative to
    its level is degenerate); lovo: held-out z spread over the normal videos (leave one out); on the
    new scene (a camera the model never saw): the same two after re-fitting on its first video and
    scoring its second — what `vadedge fit` / `calibrate` would see on a new camera's footage.
    """
    out = {}
    for c in SIGNS:
        loc, scale = robust(np.concatenate([linear(c, v.comps[c]) for v in train]))
        row = {"train_rel_spread": scale / loc, "train_lovo_spread": heldout_inflation(train, c)}
        if len(scene) >= 2:
            sl, ss = robust(linear(c, scene[0].comps[c]))
            dl, ds = robust(scene[0].comps[c])
            z = SIGNS[c] * (scene[1].comps[c] - dl) / ds
            row.update(
                scene_rel_spread=ss / sl,
                scene_heldout_z_median=float(np.median(z)),
                scene_heldout_z_spread=float(1.4826 * np.median(np.abs(z - np.median(z)))),
            )
        out[c] = row
    return out


def analyse(data: Path, cache: Path, bundle: Optional[str], out_json: Optional[Path]) -> str:
    from vadedge.bundle import load_bundle
    from vadedge.metrics import frame_auc
    from vadedge.runtime.defaults import default_bundle
    from vadedge.scoring import ema

    b = load_bundle(Path(bundle) if bundle else default_bundle())
    score = b.manifest.score.to_dict()  # the typed ScoreSpec as the manifest dict
    bw = score["weights"]
    train = load_videos(cache, "training", 1)
    test = load_videos(cache, "testing", 1, data)
    strided = {k: vids for k in (2, 3) if (vids := load_videos(cache, "training", k))}
    pseudo = load_videos(cache, "pseudo", 1)
    scene = load_videos(cache, "scene", 1)
    labels = np.concatenate([labels_of(v) for v in test])
    # 1. reproduce the SDK: its own smoothed score, and the same recomputed from the cached components
    sdk = np.concatenate([v.arrays["score"] for v in test])
    calib = score["calibration"]
    from vadedge.scoring import RobustStats, fuse

    stats = {c: RobustStats(calib[c]["location"], calib[c]["scale"]) for c in bw}
    recomputed = np.concatenate([ema(fuse(v.comps, score["signs"], bw, stats), score["smoothing"]) for v in test])
    on = score["threshold"]["on"]
    repro = {
        "sdk_causal_auc": frame_auc(labels, sdk),
        "max_abs_diff_recomputed": float(np.abs(sdk - recomputed).max()),
        "test_frames": int(labels.size),
        "anomalous": int(labels.sum()),
        "train_frames": int(sum(v.size for v in train)),
        "bundle_threshold_on": on,
    }
    for k, vids in strided.items():
        s = np.concatenate([v.arrays["score"] for v in vids])
        repro[f"bundle_s{k}_over"] = float(np.mean(s >= on))
        repro[f"bundle_s{k}_events"] = sum(track(v.arrays["score"], on, score["threshold"]["off"])[1] for v in vids)
    s1 = np.concatenate([v.arrays["score"] for v in train])
    repro["bundle_s1_over"] = float(np.mean(s1 >= on))
    report = [json.dumps(repro, indent=1)]
    guard = guard_report(train, scene)
    report.append("| component | " + " | ".join(next(iter(guard.values()))) + " |")
    for c, row in guard.items():
        report.append(f"| {c} | " + " | ".join(f"{x:.3f}" for x in row.values()) + " |")
    results = []
    for cand in candidates():
        t0 = time.perf_counter()
        r = evaluate(cand, train, test, strided, bw, pseudo, scene)
        results.append(r)
        logger.info(
            "%s: causal %.4f paper %.4f (%.1f s)", cand.name, r["causal_auc"], r["paper_auc"], time.perf_counter() - t0
        )
    report.append(table(results, sorted(strided)))
    if out_json:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"reproduce": repro, "guard": guard, "candidates": results}
        out_json.write_text(json.dumps(doc, indent=1, default=float))
    return "\n".join(report)


def table(results: Sequence[dict], strides: Sequence[int]) -> str:
    head = [
        "candidate",
        "weights",
        "pseudo-anomaly AUC (selection)",
        "causal AUC",
        "causal AUC (no EMA)",
        "per-video mean",
        "paper-protocol AUC",
        "FA/h held-out normal",
        "held-out frames over `on`",
        "delay median / max (frames)",
        "missed",
        *[f"stride {k} over `on`" for k in strides],
        "new scene: median score / over `on`",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        w = ", ".join(f"{c} {x:.2f}" for c, x in r["weights"].items())
        cells = [
            r["name"],
            w,
            f"{100 * r.get('pseudo_auc', float('nan')):.2f} %",
            f"{100 * r['causal_auc']:.2f} %",
            f"{100 * r['causal_auc_raw']:.2f} %",
            f"{100 * r['causal_macro_auc']:.2f} %",
            f"{100 * r['paper_auc']:.2f} %",
            f"{r['fa_per_hour']:.1f}",
            f"{100 * r['heldout_over']:.2f} %",
            f"{r['delay_median_frames']:.0f} / {r['delay_max_frames']:.0f}",
            str(r["missed"]),
            *[f"{100 * r[f's{k}_over']:.1f} %" for k in strides],
            f"{r.get('scene_median', float('nan')):.1f} / {100 * r.get('scene_over', float('nan')):.0f} %",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- CLI
EXTRACT_JOBS = (("testing", 1), ("training", 1), ("training", 2), ("training", 3), ("pseudo", 1), ("scene", 1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("phase", choices=("extract", "analyse"))
    ap.add_argument("--data", type=Path, required=True, help="dataset root (training/, testing/, labels)")
    ap.add_argument("--cache", type=Path, required=True, help="folder for the per-video npz arrays")
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped default bundle)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="analyse: write the results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.phase == "extract":
        extract(args.data, args.cache, args.bundle, args.threads, EXTRACT_JOBS)
        return 0
    print(analyse(args.data, args.cache, args.bundle, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
