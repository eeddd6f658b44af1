"""`vadedge demo`: the default (or a given) bundle end to end on Ped2 or on a generated clip.

On Ped2 (the scene the shipped model was trained for) the bundle runs as it is. A generated scene
is new to any model, so the demo follows the product's path for a new camera first: it renders a
few normal videos of the same scene (other seeds than the test clip), calibrates a copy of the
bundle on them with `vadedge calibrate`'s library function (into OUT/calibrated-bundle/, the
given or shipped bundle is never modified), and runs that copy on the test clip.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..bundle import BUNDLE_FILE
from ..datasets import open_split
from ..errors import DataError
from .detector import Detector
from .pipeline import RunSummary, run_source
from .plot import plot_scores
from .results import FrameResult
from .sources import FolderSource, IterableSource, Source

logger = logging.getLogger(__name__)
PED2_ENV = "VADEDGE_PED2"
DEMO_VIDEO = "02"  # Ped2 test video 02: 94 normal frames, then anomalous to the end (labels 95-180)
SCENE_SIZE = (120, 160)  # height, width of the generated scene
SCENE_SEED = 7
NORMAL_VIDEOS = 4  # normal footage the demo calibrates on: 4 x 75 frames (284 scored at clip length 5)
NORMAL_FRAMES = 75
NORMAL_DIR, CALIBRATED_DIR = "normal-footage", "calibrated-bundle"


def find_ped2(data: Optional[Path] = None) -> Optional[Path]:
    """The Ped2 root: `data`, $VADEDGE_PED2, ../shared/datasets/ped2 from the cwd or from the source tree."""
    if data is not None:
        if not (Path(data) / "testing").is_dir():
            raise DataError(f"{data} is not a dataset root with a testing/ split")
        return Path(data)
    env = os.environ.get(PED2_ENV)
    cands: list[Path] = [Path(env)] if env else []
    cands += [
        Path.cwd().parent / "shared" / "datasets" / "ped2",
        Path(__file__).resolve().parents[3] / "shared" / "datasets" / "ped2",
    ]
    for c in cands:
        if (c / "testing" / "frames").is_dir():
            return c
    return None


@dataclass
class SceneFit:
    """What the demo did to fit the bundle to the generated scene (printed before the run)."""

    source: Path  # the bundle that was calibrated (left unchanged)
    bundle: Path  # the calibrated copy the demo ran
    footage: Path
    videos: int
    frames: int  # normal frames generated
    scored: int  # scored frames the statistics and threshold were fitted on
    threshold: float
    previous_threshold: float
    seconds: float

    def format(self) -> str:
        return (
            f"fitted to the generated scene: {self.videos} normal videos ({self.frames} frames, "
            f"{self.scored} scored) calibrated {self.source} in {self.seconds:.1f} s -> {self.bundle}\n"
            f"threshold: {self.threshold:.3f} (the bundle's own: {self.previous_threshold:.3f})"
        )


@dataclass
class DemoResult:
    input: str
    summary: RunSummary
    video: Path
    events: Path
    scores: Path
    plot: Path
    fit: Optional[SceneFit] = None

    def format(self) -> str:
        head = [f"demo input: {self.input}"] + ([self.fit.format()] if self.fit else [])
        return "\n".join(head + [self.summary.format()])


def synthetic_clip(
    height: int = SCENE_SIZE[0], width: int = SCENE_SIZE[1], frames: int = 150, seed: int = SCENE_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """A generated scene (vadedge.synthetic) with a large box crossing the walkway from frame 60."""
    from ..synthetic import SceneGenerator

    return SceneGenerator(height, width, seed=seed).render(
        frames, seed=seed * 1000 + 1, anomaly="shape", anomaly_start=frames * 2 // 5
    )


def synthetic_normal_footage(
    folder: Path, videos: int = NORMAL_VIDEOS, frames: int = NORMAL_FRAMES, seed: int = SCENE_SEED
) -> Path:
    """Normal videos of `synthetic_clip`'s scene (same generator, render seeds the clip does not use),
    written losslessly as frame folders FOLDER/NN/TTT.png; returns FOLDER."""
    import cv2

    from ..synthetic import SceneGenerator

    gen = SceneGenerator(SCENE_SIZE[0], SCENE_SIZE[1], seed=seed)
    for i in range(videos):
        sub = folder / f"{i:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(gen.render(frames, seed=seed * 1000 + 100 + i)[0]):
            if not cv2.imwrite(str(sub / f"{t:03d}.png"), frame):
                raise DataError(f"cannot write the demo's normal footage to {sub}")
    return folder


def fit_to_scene(bundle: Path, out: Path, progress: bool = False) -> SceneFit:
    """Calibrate a copy of `bundle` on generated normal footage of the demo scene (OUT/normal-footage/)
    into OUT/calibrated-bundle/, replacing what an earlier demo run left there."""
    from ..calibration.recalibrate import calibrate_bundle

    t0 = time.perf_counter()
    footage, dest = out / NORMAL_DIR, out / CALIBRATED_DIR
    for old in (footage, dest):  # the demo's own outputs from an earlier run
        if old.is_dir():
            shutil.rmtree(old)
    synthetic_normal_footage(footage)
    logger.info("calibrating %s on %d generated normal videos of the demo scene", bundle, NORMAL_VIDEOS)
    rep = calibrate_bundle(bundle, [footage], out=dest, progress=progress)
    return SceneFit(
        bundle,
        dest,
        footage,
        len(rep.videos),
        rep.frames_read,
        rep.calibration.frames,
        float(rep.calibration.threshold["on"]),
        float((rep.before or {})["threshold"]["on"]),
        time.perf_counter() - t0,
    )


def run_demo(
    out: str | Path,
    *,
    model: Optional[str | Path] = None,
    data: Optional[Path] = None,
    video: Optional[str] = None,
    synthetic: bool = False,
    backend: str = "auto",
    device: str = "auto",
    threshold: Optional[tuple[float, float]] = None,
    progress: bool = True,
) -> DemoResult:
    """Run and write OUT/demo.mp4, events.jsonl, scores.csv and scores.png."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; the demo writes a folder (demo.mp4, events.jsonl, ...)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the demo folder {out}: {exc.strerror or exc}") from exc
    root = None if synthetic else find_ped2(data)
    fit: Optional[SceneFit] = None
    if root is None:
        from .defaults import default_bundle

        source = Path(model) if model is not None else default_bundle()
        if backend == "torch" or not (source / BUNDLE_FILE).is_file():
            logger.warning(
                "%s is not an exported bundle: running it on the generated scene without calibrating it there", source
            )
        else:
            fit = fit_to_scene(source, out, progress=progress)
            model = fit.bundle
    det = Detector.load(model, backend=backend, device=device, threshold=threshold)
    labels: Optional[np.ndarray]
    src: Source
    if root is not None:
        split = open_split(root, "testing")
        vids = {v.name: v for v in split.videos}
        if video is not None and video not in vids:
            raise DataError(f"{root} has no test video {video!r} (has {', '.join(vids)})")
        v = vids[video] if video else vids.get(DEMO_VIDEO, split.videos[0])
        if v.frame_files is None:
            raise DataError(f"demo needs frame folders; {v.source} is a video file: use `vadedge run` on it")
        src = FolderSource(v.source, fps=10.0).open()
        labels, desc = v.labels, f"{root.name} test video {v.name} ({v.num_frames} frames)"
    else:
        frames, labels = synthetic_clip()
        src = IterableSource(list(frames), name="synthetic", fps=25.0).open()
        desc = (
            f"generated synthetic clip ({len(frames)} frames, anomaly at frames "
            f"{int(np.argmax(labels))}-{len(labels) - 1 - int(np.argmax(labels[::-1]))})"
        )
    per_frame: list[tuple[int, Optional[float]]] = []

    def keep(_f: object, r: FrameResult) -> None:
        per_frame.append((r.frame_index, r.score))

    paths = {
        k: out / n
        for k, n in (
            ("video", "demo.mp4"),
            ("events", "events.jsonl"),
            ("scores", "scores.csv"),
            ("plot", "scores.png"),
        )
    }
    try:
        summary = run_source(
            det,
            src,
            events=paths["events"],
            scores=paths["scores"],
            video=paths["video"],
            progress=progress,
            on_result=keep,
        )
    finally:
        det.close()
    plot_scores(
        paths["plot"],
        [f for f, _ in per_frame],
        [s for _, s in per_frame],
        threshold=det.recipe.on,
        labels=labels,
        events=summary.events,
        title=f"{det.bundle.manifest.family} on {desc}",
    )
    summary.outputs["plot"] = str(paths["plot"])
    return DemoResult(desc, summary, paths["video"], paths["events"], paths["scores"], paths["plot"], fit)
