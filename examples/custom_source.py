"""A custom frame source: any Python generator of BGR uint8 frames (or (frame, timestamp) pairs).

Here the generator renders a synthetic scene on the fly; replace `frames()` with your own grabber
(a GigE SDK, a GStreamer appsink, screenshots, …). `open_source` runs it in its own thread, and
`run_source` is the same loop `vadedge run` uses (event log, CSV, annotated video, Ctrl-C).

    python examples/custom_source.py --events events.jsonl --save-video out.mp4
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np

from vadedge import Detector, open_source
from vadedge.runtime.pipeline import run_source
from vadedge.synthetic import SceneGenerator


def frames(n: int = 200, anomaly_at: int = 80) -> Iterator[tuple[np.ndarray, float]]:
    """Yield (frame, timestamp): a scene where a large box enters at `anomaly_at`."""
    video, _ = SceneGenerator(120, 160, seed=11).render(n, seed=11001, anomaly="shape", anomaly_start=anomaly_at)
    t0 = time.time()
    for i, frame in enumerate(video):
        yield frame, t0 + i / 25.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="bundle folder (default: the model shipped with vadedge)")
    ap.add_argument("--events", default=None)
    ap.add_argument("--save-video", default=None)
    args = ap.parse_args()
    det = Detector.load(args.model)
    source = open_source(frames(), fps=25)  # live=True would drop frames instead of waiting for the model
    summary = run_source(det, source, events=args.events, video=args.save_video)
    print(summary.format())


if __name__ == "__main__":
    main()
