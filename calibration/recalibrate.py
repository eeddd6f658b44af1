"""`vadedge calibrate`: re-fit a bundle's score statistics and threshold on normal footage, without torch.

The exported graph already outputs every score component, so a bundle can be re-calibrated for a
new camera from its own files: the footage is sampled at the bundle's frame rate (the temporal
contract, `vadedge.runtime.sampling`), run through the bundle's graph with the state carried per
video (`StreamRunner.score_frames`, the same components `Detector.process` computes), and
`vadedge.scoring.calibrate_scores` fits the robust location/scale of each component and the
false-alarm-rate threshold on the fused, smoothed score. The fusion weights, signs, smoothing and
minimum event length stay the bundle's, unless `select=True`: then the footage is split by video
(`heldout_count`: the last 25 %, at least one, in the order given), the scoring core's
`select_components` decides on the held-out part which components are degenerate (dropped, with
the reason in `score.dropped`) and gives the survivors equal weights (docs/causal-scores.md,
"Selection rule"), the statistics and threshold are fitted on the fit part only, and the held-out
part, replayed through the resulting recipe (fusion, EMA, hysteresis, minimum event length),
gives the expected false alarms per hour. The result is a copy of the bundle with an updated
vadedge.json (or the bundle itself with `in_place=True`), its provenance naming the footage by
file name only.

Footage is checked before anything is written: every path must exist and decode, all frames must
have one size (one camera), and the sampled footage must give at least `min_frames(target)`
scored frames (`MIN_FRAMES`, and 2 / target so that the threshold is not just the largest normal
score) — with `select`, in its fit part, and at least two videos.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from vadedge.bundle import (
    BUNDLE_FILE,
    Bundle,
    BundleError,
    LocalSpec,
    MaskSpec,
    Stats,
    ThresholdSpec,
    load_bundle,
    save_bundle,
)
from vadedge.datasets import VIDEO_EXTS, Video
from vadedge.errors import ConfigError, DataError
from vadedge.metrics import alarm_metrics
from vadedge.preprocess import prepare_frame
from vadedge.runtime.sampling import check_fps, sample_indices
from vadedge.scoring import (
    DEFAULT_TARGET,
    SELECTION_RULE,
    CausalScorer,
    ComponentSelection,
    ScoreCalibration,
    ScoreRecipe,
    calibrate_scores,
    component_units,
    select_components,
)

from .footage import open_normal_footage
from .scores import score_videos

logger = logging.getLogger(__name__)
MIN_FRAMES = 100  # scored frames (10 s at 10 fps) below which a calibration is refused
HELDOUT_FRACTION = 0.25  # of the videos, held out by `select` (the last ones)


LOCAL_WINDOWS = (8, 16, 32)  # model-input pixels (docs/causal-scores.md: all three, no choice)


def with_local(bundle: Bundle, windows: Sequence[int] = LOCAL_WINDOWS) -> Bundle:
    """`bundle` with the local error components `local<k>` declared next to the graph's own.

    Uncalibrated (equal weights, no statistics or threshold): the next step is `calibrate_bundle`
    (with `select=True` to drop degenerate components). The previous fusion stays as
    `score.paper_weights`, which the offline paper protocol of `vadedge eval` keeps.
    """
    score = bundle.manifest.score
    graph_comps = list(bundle.manifest.graph.scores)
    local = {f"local{px}": LocalSpec("error_map", px) for px in windows}
    signs = {**{c: score.signs[c] for c in graph_comps}, **dict.fromkeys(local, -1)}
    spec = dataclasses.replace(
        score,
        signs=signs,
        weights=dict.fromkeys(signs, 1.0),
        calibration=None,
        threshold=None,
        local=local,
        dropped={},
        paper_weights=dict(score.offline_weights),
    )
    manifest = dataclasses.replace(bundle.manifest, score=spec).validated()
    return dataclasses.replace(bundle, manifest=manifest)


def min_frames(target: float) -> int:
    """The fewest scored normal frames a calibration for false-alarm rate `target` accepts."""
    return max(MIN_FRAMES, math.ceil(2.0 / target))


def heldout_count(videos: int) -> int:
    """How many of `videos` normal videos (the last ones) component selection holds out: 25 %, at
    least one, and at least one left to fit on (DataError below two videos)."""
    if videos < 2:
        raise DataError(f"component selection needs at least 2 normal videos (one is held out), got {videos}")
    return max(1, int(videos * HELDOUT_FRACTION))


def heldout_alarms(videos: Sequence[dict[str, np.ndarray]], recipe: ScoreRecipe, fps: float) -> dict:
    """False alarms on held-out normal videos replayed through `recipe` as a stream would score them
    (each video a fresh stream: fusion, EMA, hysteresis, minimum event length), and per hour at `fps`."""
    rows = []
    for i, comps in enumerate(videos):
        scorer = CausalScorer(recipe, f"heldout{i}")
        n = len(next(iter(comps.values())))
        flags = np.array(
            [scorer.update(t, t / fps, {c: float(v[t]) for c, v in comps.items()})[2] for t in range(n)], dtype=bool
        )
        rows.append((f"heldout{i}", np.zeros(n, np.uint8), flags, 0))
    m = alarm_metrics(rows, fps)
    return {
        "videos": len(rows),
        "frames": m["normal_frames"],
        "seconds": m["normal_seconds"],
        "false_alarms": m["false_alarms"],
        "false_alarms_per_hour": m["false_alarms_per_hour"],
    }


@dataclass
class FootageVideo:
    """One normal video to calibrate on, and the frame rate its frames were taken at."""

    name: str
    video: Video
    fps: float


@dataclass
class CalibrationReport:
    """What `calibrate_bundle` did (also written to the bundle's provenance)."""

    bundle: Path
    calibration: ScoreCalibration
    videos: list[str] = field(default_factory=list)
    frames_read: int = 0
    frames_used: int = 0  # after sampling at the bundle's rate
    sample_fps: float = 0.0
    before: Optional[dict] = None  # the bundle's previous calibration + threshold
    selection: Optional[ComponentSelection] = None  # with `select`: weights, dropped components, evidence
    heldout: Optional[dict] = None  # with `select`: held-out videos, frames, false alarms (per hour)

    def format(self) -> str:
        th = self.calibration.threshold
        stats = ", ".join(
            f"{k}: location {v.location:.4g}, scale {v.scale:.4g}" for k, v in self.calibration.stats.items()
        )
        lines = [
            f"calibrated {self.bundle} on {len(self.videos)} videos: {self.frames_read} frames read, "
            f"{self.frames_used} used at {self.sample_fps:g} fps, {self.calibration.frames} scored",
            f"statistics: {stats}",
        ]
        if self.selection is not None:
            kept = ", ".join(f"{c} {w:.3g}" for c, w in self.selection.weights.items() if w)
            lines.append(f"components: weights {kept}")
            lines += [f"dropped {c}: {why}" for c, why in self.selection.dropped.items()]
        lines.append(
            f"threshold: on {th['on']:.3f}, off {th['off']:.3f} (false-alarm rate {th['target']:g} of normal frames)"
        )
        if self.heldout is not None:
            h = self.heldout
            lines.append(
                f"held-out normal footage: {h['videos']} videos, {h['frames']} frames "
                f"({h['seconds']:.0f} s): {h['false_alarms']} false alarms, expected "
                f"{h['false_alarms_per_hour']:.1f} per hour"
            )
        return "\n".join(lines)


def collect_footage(paths: Sequence[Union[str, Path]], fps: Optional[float] = None) -> list[FootageVideo]:
    """The normal videos named by `paths`: video files, frame folders, folders of videos, dataset roots.

    `fps` is the rate of frame folders (which carry no timing); video files report their own
    (falling back to `fps`). A frame folder without `fps` is taken to be at the bundle's rate.
    """
    if not paths:
        raise ConfigError("no footage given: pass video files, frame folders or a dataset root")
    rate = None if fps is None else check_fps(fps, "fps")
    out: list[FootageVideo] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DataError(f"footage {p} does not exist")
        if p.is_file():
            if p.suffix.lower() not in VIDEO_EXTS:
                raise DataError(f"footage {p} is not a video file ({', '.join(sorted(VIDEO_EXTS))}) or a folder")
            videos = [Video(p.stem, p)]
        else:
            videos = open_normal_footage(p).videos
        for v in videos:
            v_fps = _container_fps(v.source) if v.is_file else None
            out.append(FootageVideo(f"{p.name}/{v.name}" if v.source != p else p.name, v, v_fps or rate or 0.0))
    return out


def _container_fps(path: Path) -> Optional[float]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"cannot open video file {path} (not a video, or a codec OpenCV lacks)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else None


def _load_sampled(item: FootageVideo, bundle: Bundle, target_fps: float, first_shape: list) -> tuple[np.ndarray, int]:
    """The video's frames sampled at `target_fps` and preprocessed, and how many were read; checks sizes."""
    raw = []
    for frame in item.video.iter_frames():
        if not first_shape:
            first_shape.append((item.name, frame.shape))
        elif frame.shape != first_shape[0][1]:
            name, shape = first_shape[0]
            raise DataError(
                f"mixed frame sizes: {item.name} has frames of {frame.shape[1]}x{frame.shape[0]}, "
                f"{name} of {shape[1]}x{shape[0]}; calibrate on footage of one camera at one size"
            )
        raw.append(frame)
    if not raw:
        raise DataError(f"footage {item.video.source} has no readable frames")
    keep = sample_indices(len(raw), item.fps or target_fps, target_fps, name=item.name)
    spec = bundle.input_spec
    return np.stack([prepare_frame(raw[i], spec) for i in keep]), len(raw)


def calibrate_bundle(
    bundle: Union[str, Path],
    footage: Sequence[Union[str, Path]],
    *,
    out: Union[str, Path, None] = None,
    in_place: bool = False,
    target: float = DEFAULT_TARGET,
    fps: Optional[float] = None,
    threads: Optional[int] = None,
    mask: Optional[MaskSpec] = None,
    select: bool = False,
    progress: bool = False,
) -> CalibrationReport:
    """Re-fit `bundle`'s score statistics and threshold on normal `footage`; write the result to `out`
    (a new folder, the bundle copied) or, with `in_place`, into `bundle` itself. See the module doc.
    `mask` (vadedge.roi) becomes the bundle's `score.mask` and is applied while calibrating, so the
    statistics are those of the masked local components the bundle will run. `select`: choose the
    components and their weights on a held-out part of the footage first (module doc).

    Raises BundleError for a bundle whose graph lacks a score component, DataError for footage that
    is missing, unreadable, of mixed sizes or too short, ConfigError for bad options.
    """
    from vadedge.runtime.runner import StreamRunner

    if (out is None) == (not in_place):
        raise ConfigError("give either an output folder (out) or in_place=True")
    if not 0 < target < 0.5:
        raise ConfigError(f"target false-alarm rate must be in (0, 0.5), got {target}")
    src = Path(bundle)
    dest = src if in_place else Path(out)  # type: ignore[arg-type]
    if not in_place and dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"output {dest} already exists; choose a new folder (or use --in-place)")
    b = load_bundle(src)
    if mask is not None:
        b = Bundle(
            b.path,
            dataclasses.replace(b.manifest, score=dataclasses.replace(b.manifest.score, mask=mask)).validated(),
            b.state,
        )
    m = b.manifest
    items = collect_footage(footage, fps)
    try:
        runner = StreamRunner.from_bundle(b, threads=threads)
    except BundleError as exc:
        raise BundleError(f"cannot calibrate {src}: {exc}") from None
    try:
        target_fps = m.input.frame_rate
        first_shape: list = []
        videos, names, scored_names, read = [], [], [], 0
        for item in items:
            frames, n = _load_sampled(item, b, target_fps, first_shape)
            read += n
            names.append(item.name)
            if len(frames) >= b.clip_length:
                videos.append(frames)
                scored_names.append(item.name)
            else:
                logger.warning(
                    "%s: %d frames at %g fps are fewer than one clip (%d); skipped",
                    item.name,
                    len(frames),
                    target_fps,
                    b.clip_length,
                )
        used = sum(len(v) for v in videos)
        n_held = heldout_count(len(videos)) if select else 0
        fit_part = videos[: len(videos) - n_held]
        scored = sum(len(v) - b.clip_length + 1 for v in fit_part)
        need = min_frames(target)
        if scored < need:
            where = f" in the {len(fit_part)} videos fitted on ({n_held} held out)" if select else ""
            raise DataError(
                f"footage too short: {scored} scored frames{where} "
                f"({sum(len(v) for v in fit_part)} frames at {target_fps:g} fps, "
                f"minus {b.clip_length - 1} warm-up frames per video); calibrating for a "
                f"false-alarm rate of {target:g} needs at least {need} (about "
                f"{math.ceil((need + b.clip_length - 1) / target_fps)} s of normal footage at "
                f"{target_fps:g} fps)"
            )
        scores = score_videos(runner, videos, b.state, progress=progress)
    finally:
        runner.close()
    weights, dropped, selection, heldout = dict(m.score.weights), dict(m.score.dropped), None, None
    fit_scores, held_scores = scores[: len(scores) - n_held], scores[len(scores) - n_held :]
    if select:
        selection = select_components(
            fit_scores, held_scores, m.score.signs, component_units(m.score.signs, m.score.local)
        )
        weights, dropped = selection.weights, selection.dropped
    cal = calibrate_scores(fit_scores, m.score.signs, weights, target=target, smoothing=m.score.smoothing)
    before = {"calibration": m.score.to_dict()["calibration"], "threshold": m.score.to_dict()["threshold"]}
    prov = dict(m.provenance)
    prov["score_calibration"] = {
        **{k: v for k, v in cal.summary().items() if k != "stats"},
        "tool": "vadedge calibrate",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "data": names,
        "frames_read": read,
        "frames_used": used,
        "sample_fps": target_fps,
        "precision": b.precision,
        "previous": before,
    }
    score = dataclasses.replace(
        m.score,
        weights=weights,
        dropped=dropped,
        calibration={k: Stats(float(v["location"]), float(v["scale"])) for k, v in cal.manifest_calibration().items()},
        threshold=ThresholdSpec.from_dict(cal.threshold),
    )
    if selection is not None:
        recipe = ScoreRecipe.from_manifest(score)
        heldout = heldout_alarms(held_scores, recipe, target_fps)
        fitted = len(scored_names) - n_held
        prov["score_selection"] = {
            "rule": SELECTION_RULE,
            "tool": "vadedge calibrate --select",
            "fit_videos": scored_names[:fitted],
            "heldout_videos": scored_names[fitted:],
            "evidence": selection.evidence,
            "heldout": heldout,
        }
    manifest = dataclasses.replace(m, score=score, provenance=prov).validated()
    _write(src, dest, manifest, b, in_place)
    return CalibrationReport(dest, cal, names, read, used, target_fps, before, selection, heldout)


def _write(src: Path, dest: Path, manifest, bundle: Bundle, in_place: bool) -> None:
    """The bundle with `manifest`: in place (vadedge.json replaced atomically) or a full copy at `dest`."""
    if in_place:
        save_bundle(dest, manifest, bundle.state)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        save_bundle(tmp, manifest, bundle.state)
        load_bundle(tmp)  # the copy loads as a bundle before it is put in place
        if dest.exists():
            dest.rmdir()  # an empty folder (checked above)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    assert (dest / BUNDLE_FILE).is_file()
