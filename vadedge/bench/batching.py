"""Side-by-side benchmark: N cameras as one batched call per step vs one call per camera.

    python -m vadedge.bench.batching BUNDLE --streams 4 --steps 40 --rounds 5

Both modes run on the same Detector configuration and the same frames (`measure.streams_pass`),
interleaved round by round, so the printed ratio is robust to machine load; absolute numbers depend
on the machine. Needs a bundle exported with `--batch dynamic` (or a static batch >= --streams).
Without BUNDLE a synthetic bundle (`synthetic_bundle.write_synthetic_bundle`, needs `onnx`) is used.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Optional

from ..runtime.detector import Detector
from .measure import streams_pass, synthetic_frames


def compare_batching(
    bundle: Path, streams: int, steps: int, rounds: int, threads: Optional[int] = None
) -> tuple[str, float, float]:
    """(detector description, median ms per frame with one call per stream, ... with one batched call)."""
    det = Detector.load(bundle, backend="onnxruntime", device="cpu", threads=threads, heatmap=False)
    if det.backend.batch is not None and det.backend.batch < streams:
        raise SystemExit(f"bundle batch {det.backend.batch} < --streams {streams}: export with --batch dynamic")
    frames = synthetic_frames(steps + det.clip_length + 7 * streams, max(det.spec.height, 96), max(det.spec.width, 128))
    per: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for batched in (False, True):
            per[batched].append(1.0 / streams_pass(det, frames, streams, steps, batched=batched))
    det.close()
    return det.describe(), statistics.median(per[False]), statistics.median(per[True])


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", type=Path, default=None)
    ap.add_argument("--streams", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40, help="frames per stream per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    bundle = args.bundle
    if bundle is None:
        from .synthetic_bundle import write_synthetic_bundle

        bundle = write_synthetic_bundle(Path(tempfile.mkdtemp()) / "synthetic", batch="dynamic", height=128, width=128)
    described, a, b = compare_batching(bundle, args.streams, args.steps, args.rounds, args.threads)
    print(described)
    print(f"{args.streams} streams x {args.steps} frames, {args.rounds} interleaved rounds (median):")
    print(f"  one call per stream : {a * 1e3:8.2f} ms per frame")
    print(f"  one batched call    : {b * 1e3:8.2f} ms per frame")
    print(f"  speed-up            : {a / b:8.2f}x")


if __name__ == "__main__":
    main()
