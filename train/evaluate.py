"""Evaluation of a checkpoint or an exported bundle on labelled test footage, under two protocols.

Every test video is one stream through the runtime `Detector` (the one stream runner: memory
carried and gated per frame, the same scoring as `vadedge run`).

* paper: per-video min-max of PSNR and feature distance, fused with the paper's λ, first frames
  without a prediction dropped, pooled frame-level AUC (+ per-video macro AUC, EER) — what the
  papers' scripts compute. Not causal: it needs each video's future.
* streaming: no future frames. The Detector's own score at the operating point: components
  normalised with robust statistics of normal footage (a bundle's calibration; for a checkpoint,
  fitted on the training videos as `vadedge export` would), fused, smoothed by the causal EMA
  (the bundle's `smoothing` unless overridden). At the threshold (`on` / `off`, minimum event
  length) it also reports false alarms per hour of normal footage and the detection delay per
  anomalous interval (`vadedge.metrics.alarm_metrics`).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vadedge.datasets import Split, Video, open_split
from vadedge.errors import CheckpointError, ConfigError, DataError
from vadedge.metrics import alarm_metrics, equal_error_rate, frame_auc, has_both_classes, minmax_normalise
from vadedge.preprocess import prepare_frame
from vadedge.progress import progress_bar
from vadedge.scoring import DEFAULT_MIN_EVENT_FRAMES, DEFAULT_SMOOTHING, RobustStats, calibrate_scores, fit_stats

PROTOCOLS = ("paper", "streaming", "both")
DEFAULT_FPS = 10.0  # UCSD Ped2 / Ped1 frame rate; pass the footage's own rate for other data


@dataclass
class VideoScores:
    """Per-frame results of one video; frames before `first` have no prediction (warm-up / adaptation).

    `components` are the graph's raw score components, `score` the Detector's smoothed score and
    `flags` its is_anomaly decision, all for the scored frames only; `labels` likewise.
    """

    name: str
    first: int
    components: dict[str, np.ndarray]
    labels: Optional[np.ndarray] = None  # labels of the scored frames only
    score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def size(self) -> int:
        return next(iter(self.components.values())).size

    @property
    def labelled(self) -> np.ndarray:
        """The labels of the scored frames (an error for unlabelled footage)."""
        if self.labels is None:
            raise DataError(f"video {self.name} has no labels")
        return self.labels


def stream_video(det: Any, video: Video, stream: str, *, fps: float = DEFAULT_FPS, adapt_k: int = 0) -> VideoScores:
    """Feed one video, frame by frame, to a fresh stream `stream` of Detector `det`.

    adapt_k > 0 (MPN): the stream first adapts on the video's first adapt_k clips and is fed from
    frame adapt_k on, so its first clip_length − 1 + adapt_k frames get no score (the K-shot protocol).
    """
    h = det.stream(stream)
    n = det.clip_length
    frames = video.iter_frames()
    if adapt_k:
        head = [f for _, f in zip(range(adapt_k + n - 1), frames)]
        if len(head) < adapt_k + n - 1:
            raise DataError(
                f"video {video.name}: {adapt_k}-shot adaptation needs {adapt_k + n - 1} frames, it has {len(head)}"
            )
        prepared = np.stack([prepare_frame(f, det.spec) for f in head])
        h.adapt(clips=np.stack([prepared[i : i + n] for i in range(adapt_k)]))
        frames = iter(head[adapt_k:] + list(frames))
    comps: dict[str, list[float]] = {c: [] for c in det.recipe.signs}
    score: list[float] = []
    flags: list[bool] = []
    for i, frame in enumerate(frames):  # a video shorter than one clip gets no scored frame
        r = h.process(frame, (adapt_k + i) / fps)
        if r.warmup:
            continue
        for c, v in r.components.items():
            comps[c].append(v)
        score.append(r.score)
        flags.append(r.is_anomaly)
    det.remove_stream(h)  # the video ended: close an open event, free the stream's buffer and state
    first = adapt_k + n - 1
    labels = video.labels[first:] if video.labels is not None else None
    return VideoScores(
        video.name,
        first,
        {c: np.asarray(v) for c, v in comps.items()},
        labels,
        np.asarray(score, dtype=np.float64),
        np.asarray(flags, dtype=bool),
    )


def score_split(
    det: Any, split: Split, *, fps: float = DEFAULT_FPS, adapt_k: int = 0, progress: bool = True, desc: str = "scoring"
) -> list[VideoScores]:
    """Every video of a split as its own stream of `det`, each from the bundle's initial state."""
    return [
        stream_video(det, v, f"{split.name}/{v.name}", fps=fps, adapt_k=adapt_k)
        for v in progress_bar(split.videos, total=len(split.videos), desc=desc, enabled=progress)
    ]


def paper_scores(videos: list[VideoScores], signs: dict[str, int], weights: dict[str, float]) -> list[np.ndarray]:
    """Σ_c w_c·g(c) with g = per-video min-max, flipped (1 − g) for components where larger = normal.

    For MNAD this is Eq. 16–17: S_t = λ(1 − g(PSNR)) + (1 − λ) g(D). (Offline; the causal fusion
    is `vadedge.scoring.fuse`.)
    """

    def oriented(x: np.ndarray, sign: int) -> np.ndarray:
        g = minmax_normalise(x)
        return g if sign > 0 else 1.0 - g

    return [np.asarray(sum(w * oriented(v.components[c], signs[c]) for c, w in weights.items() if w)) for v in videos]


def calibrate(videos: list[VideoScores]) -> dict[str, RobustStats]:
    """Robust statistics of each score component over the scored frames of `videos` (normal footage)."""
    return fit_stats(v.components for v in videos)


def summarise(videos: list[VideoScores], scores: list[np.ndarray]) -> dict:
    labels = np.concatenate([v.labelled for v in videos])
    pooled = np.concatenate(scores)
    per_video = {v.name: frame_auc(v.labelled, s) for v, s in zip(videos, scores) if has_both_classes(v.labelled)}
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
    fps: float = 0.0  # frames scored per second of wall time
    calibration: Optional[dict] = None
    adapt_k: int = 0  # few-shot adaptation clips per stream (MPN)
    operating_point: Optional[dict] = None  # smoothing / threshold / min_event_frames of the streaming protocol
    backend: str = ""

    def format(self) -> str:
        rows = [("", *self.protocols.keys())]
        for key, label in (("auc", "AUC (pooled)"), ("macro_auc", "AUC (per-video mean)"), ("eer", "EER")):
            rows.append((label, *(f"{100 * r[key]:.2f} %" for r in self.protocols.values())))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        any_r = next(iter(self.protocols.values()))
        lines.append(
            f"{any_r['frames']} scored frames ({any_r['anomalous_frames']} anomalous), "
            f"{self.fps:.1f} frames/s scoring ({self.backend})"
        )
        op = self.operating_point
        if op is not None:
            th = (
                f"threshold on {op['on']:.3f} / off {op['off']:.3f}, min event {op['min_event_frames']} frames"
                if op.get("on") is not None
                else "no threshold"
            )
            lines.append(f"streaming operating point ({op['source']}): smoothing {op['smoothing']:g}, {th}")
        alarms = self.protocols.get("streaming", {}).get("alarms")
        if alarms:
            lines.append(
                f"at the threshold: {alarms['false_alarms']} false alarm(s) of {alarms['alarms']} in "
                f"{alarms['normal_seconds']:.1f} s of normal footage = "
                f"{alarms['false_alarms_per_hour']:.0f} per hour (at {alarms['fps']:g} fps)"
            )
            if alarms["detected"]:
                lines.append(
                    f"  {alarms['detected']}/{alarms['intervals']} anomalous intervals detected; delay "
                    f"median {alarms['delay_frames_median']:g} frames ({alarms['delay_s_median']:.2f} s), "
                    f"mean {alarms['delay_frames_mean']:.1f} frames ({alarms['delay_s_mean']:.2f} s), "
                    f"max {alarms['delay_frames_max']:g} frames"
                )
            else:
                lines.append(f"  0/{alarms['intervals']} anomalous intervals detected")
        return "\n".join(lines)


def _model_kind(path: Path) -> str:
    if (path / "vadedge.json").is_file():
        return "bundle"
    if (path / "config.json").is_file():
        return "checkpoint"
    raise CheckpointError(f"{path} is not a vadedge checkpoint or bundle (no config.json or vadedge.json)")


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    *,
    protocol: str = "both",
    out: Optional[str | Path] = None,
    smoothing: Optional[float] = None,
    calib_videos: Optional[int] = None,
    threads: Optional[int] = None,
    progress: bool = True,
    plots: bool = True,
    adapt_k: int = 0,
    fps: float = DEFAULT_FPS,
    backend: str = "auto",
) -> EvalResult:
    """Evaluate a checkpoint or a bundle on DATA/testing (labels required); write results.json, scores.csv
    and plots to `out`.

    The streaming protocol scores at the model's operating point: a bundle's calibration, smoothing
    and threshold; a checkpoint's are fitted on DATA/training first (the first `calib_videos`),
    with the exporter's defaults. `smoothing` overrides the EMA factor. `fps`: frame rate of the
    test footage, for the false-alarm rate and delays in seconds. `adapt_k`: few-shot adaptation
    per stream (test and calibration videos) for models that support it.
    """
    from vadedge.runtime.detector import Detector

    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    kind = _model_kind(Path(model_dir))
    if kind == "checkpoint":
        from vadedge.train.checkpoint import load_checkpoint

        load_checkpoint(model_dir)  # a clear CheckpointError for a broken checkpoint, before any scoring
    test = open_split(data, "testing", require_labels=True)
    load: dict[str, Any] = dict(backend=backend, threads=threads, heatmap=False, smoothing=smoothing)
    det = Detector.load(model_dir, **load)
    if adapt_k and not det.bundle.manifest.graph.params:
        raise ConfigError(f"--adapt-k: model '{det.bundle.manifest.family}' does not support few-shot adaptation")
    signs, weights = dict(det.recipe.signs), dict(det.recipe.weights)
    streaming = protocol in ("streaming", "both")
    t0 = time.time()
    calibration: Optional[dict] = None
    source = kind
    if streaming and det.recipe.calibration is None:  # a checkpoint: fit the operating point export would ship
        train_split = open_split(data, "training")
        if calib_videos:
            train_split.videos = train_split.videos[:calib_videos]
        normal = score_split(
            det, train_split, fps=fps, adapt_k=adapt_k, progress=progress, desc="calibrating on training videos"
        )
        cal = calibrate_scores(
            [v.components for v in normal],
            signs,
            weights,
            smoothing=DEFAULT_SMOOTHING if smoothing is None else smoothing,
        )
        calibration = cal.summary()
        source = "fitted on training footage"
        det.close()
        det = Detector.load(
            model_dir,
            **{**load, "smoothing": cal.smoothing},
            calibration=cal.stats,
            threshold=(cal.threshold["on"], cal.threshold["off"]),
            min_event_frames=DEFAULT_MIN_EVENT_FRAMES,
        )
    elif (stats := det.recipe.stats) is not None:
        calibration = {"stats": {k: asdict(v) for k, v in stats.items()}, "source": kind}
    t1 = time.time()
    videos = score_split(det, test, fps=fps, adapt_k=adapt_k, progress=progress, desc="scoring test videos")
    scored = sum(v.size for v in videos)
    recipe = det.recipe
    result = EvalResult(
        str(model_dir),
        str(data),
        fps=scored / max(time.time() - t1, 1e-9),
        adapt_k=adapt_k,
        calibration=calibration,
        backend=det.backend.describe(),
    )
    det.close()
    per_frame: dict[str, list[np.ndarray]] = {}
    if protocol in ("paper", "both"):
        # the family's paper fusion (score.paper_weights), not the bundle's causal weights
        paper_weights = dict(det.bundle.manifest.score.offline_weights)
        per_frame["paper"] = paper_scores(videos, signs, paper_weights)
        result.protocols["paper"] = summarise(videos, per_frame["paper"])
    if streaming:
        per_frame["streaming"] = [v.score for v in videos]
        result.operating_point = {
            "source": source if smoothing is None else f"{source}, smoothing overridden",
            "smoothing": recipe.smoothing,
            "on": recipe.on,
            "off": recipe.off,
            "min_event_frames": recipe.min_event_frames,
        }
        result.protocols["streaming"] = {**summarise(videos, per_frame["streaming"]), "smoothing": recipe.smoothing}
        if recipe.has_threshold:
            result.protocols["streaming"]["alarms"] = alarm_metrics(
                [
                    (
                        v.name,
                        np.r_[np.zeros(v.first, bool), v.labelled],
                        np.r_[np.zeros(v.first, bool), v.flags],
                        v.first,
                    )
                    for v in videos
                ],
                fps,
            )
    result.seconds = time.time() - t0
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(asdict(result), indent=1))
        _write_scores_csv(out / "scores.csv", videos, per_frame)
        if plots:
            from .plots import plot_roc, plot_score_curves

            labels = np.concatenate([v.labelled for v in videos])
            plot_roc(out / "roc.png", labels, {k: np.concatenate(s) for k, s in per_frame.items()})
            for name, scores in per_frame.items():
                plot_score_curves(out / f"scores_{name}.png", videos, scores, title=f"{name} protocol")
    return result


def _write_scores_csv(path: Path, videos: list[VideoScores], per_frame: dict[str, list[np.ndarray]]) -> None:
    names = list(videos[0].components)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        alarm = "streaming" in per_frame
        w.writerow(["video", "frame", "label", *names, *[f"score_{k}" for k in per_frame], *(["alarm"] * alarm)])
        for i, v in enumerate(videos):
            for j in range(v.size):
                w.writerow(
                    [
                        v.name,
                        v.first + j,
                        int(v.labelled[j]),
                        *[f"{v.components[c][j]:.6g}" for c in names],
                        *[repr(float(per_frame[k][i][j])) for k in per_frame],
                        *([int(v.flags[j])] * alarm),
                    ]
                )
