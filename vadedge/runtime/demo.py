"""`vadedge demo`: the default (or a given) bundle end to end on Ped2 or on a generated clip."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..datasets import open_split
from ..errors import DataError
from .detector import Detector
from .pipeline import RunSummary, run_source
from .plot import plot_scores
from .results import FrameResult
from .sources import FolderSource, IterableSource, Source

PED2_ENV = "VADEDGE_PED2"
DEMO_VIDEO = "02"  # Ped2 test video 02: 94 normal frames, then anomalous to the end (labels 95-180)


def find_ped2(data: Optional[Path] = None) -> Optional[Path]:
    """The Ped2 root: `data`, $VADEDGE_PED2, ../shared/datasets/ped2 from the cwd or from the source tree."""
    if data is not None:
        if not (Path(data) / "testing").is_dir():
            raise DataError(f"{data} is not a dataset root with a testing/ split")
        return Path(data)
    env = os.environ.get(PED2_ENV)
    cands: list[Path] = [Path(env)] if env else []
    cands += [Path.cwd().parent / "shared" / "datasets" / "ped2",
              Path(__file__).resolve().parents[3] / "shared" / "datasets" / "ped2"]
    for c in cands:
        if (c / "testing" / "frames").is_dir():
            return c
    return None


@dataclass
class DemoResult:
    input: str
    summary: RunSummary
    video: Path
    events: Path
    scores: Path
    plot: Path

    def format(self) -> str:
        return "\n".join([f"demo input: {self.input}", self.summary.format()])


def synthetic_clip(height: int = 120, width: int = 160, frames: int = 150, seed: int = 7
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A generated scene (vadedge.synthetic) with a large box crossing the walkway from frame 60."""
    from ..synthetic import SceneGenerator

    return SceneGenerator(height, width, seed=seed).render(frames, seed=seed * 1000 + 1, anomaly="shape",
                                                           anomaly_start=frames * 2 // 5)


def run_demo(out: str | Path, *, model: Optional[str | Path] = None, data: Optional[Path] = None,
             video: Optional[str] = None, synthetic: bool = False, backend: str = "auto", device: str = "auto",
             threshold: Optional[tuple[float, float]] = None, progress: bool = True) -> DemoResult:
    """Run and write OUT/demo.mp4, events.jsonl, scores.csv and scores.png."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; the demo writes a folder (demo.mp4, events.jsonl, ...)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the demo folder {out}: {exc.strerror or exc}") from exc
    det = Detector.load(model, backend=backend, device=device, threshold=threshold)
    root = None if synthetic else find_ped2(data)
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
        desc = f"generated synthetic clip ({len(frames)} frames, anomaly at frames " \
               f"{int(np.argmax(labels))}-{len(labels) - 1 - int(np.argmax(labels[::-1]))})"
    per_frame: list[tuple[int, Optional[float]]] = []

    def keep(_f: object, r: FrameResult) -> None:
        per_frame.append((r.frame_index, r.score))

    paths = {k: out / n for k, n in (("video", "demo.mp4"), ("events", "events.jsonl"),
                                      ("scores", "scores.csv"), ("plot", "scores.png"))}
    try:
        summary = run_source(det, src, events=paths["events"], scores=paths["scores"], video=paths["video"],
                             progress=progress, on_result=keep)
    finally:
        det.close()
    plot_scores(paths["plot"], [f for f, _ in per_frame], [s for _, s in per_frame], threshold=det.recipe.on,
                labels=labels, events=summary.events, title=f"{det.bundle.manifest.family} on {desc}")
    summary.outputs["plot"] = str(paths["plot"])
    return DemoResult(desc, summary, paths["video"], paths["events"], paths["scores"], paths["plot"])
