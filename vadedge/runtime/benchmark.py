"""Side-by-side benchmark: N cameras as one batched call per step vs one call per camera.

    python -m vadedge.runtime.benchmark BUNDLE --streams 4 --steps 40 --rounds 5

Both modes run on the same Detector configuration and the same frames, interleaved round by round,
so the printed ratio is robust to machine load; absolute numbers depend on the machine. Needs a
bundle exported with `--batch dynamic` (or a static batch >= --streams). Without BUNDLE a toy
bundle (vadedge.runtime.testing, needs `onnx`) is used.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from .detector import Detector


def _frames(n_streams: int, steps: int, h: int, w: int, seed: int = 0) -> list[list[np.ndarray]]:
    from ..synthetic import SceneGenerator

    gen = SceneGenerator(h, w, seed=seed)
    return [list(gen.render(steps, seed=seed * 100 + i)[0]) for i in range(n_streams)]


def _round(bundle: Path, vids: list[list[np.ndarray]], batched: bool, threads: Optional[int]) -> float:
    det = Detector.load(bundle, backend="onnxruntime", device="cpu", threads=threads, heatmap=False)
    hs = [det.stream(f"cam{i}") for i in range(len(vids))]
    warm = det.clip_length - 1
    for t in range(warm):  # fill the buffers (no inference)
        det.process_many({h: v[t] for h, v in zip(hs, vids)})
    t0 = time.perf_counter()
    for t in range(warm, len(vids[0])):
        if batched:
            det.process_many({h: v[t] for h, v in zip(hs, vids)})
        else:
            for h, v in zip(hs, vids):
                h.process(v[t])
    return (time.perf_counter() - t0) / ((len(vids[0]) - warm) * len(vids))


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
        from .testing import make_toy_bundle

        bundle = make_toy_bundle(Path(tempfile.mkdtemp()) / "toy", batch="dynamic", height=128, width=128)
    det = Detector.load(bundle, backend="onnxruntime", device="cpu")
    if det.backend.batch is not None and det.backend.batch < args.streams:
        raise SystemExit(f"bundle batch {det.backend.batch} < --streams {args.streams}: export with --batch dynamic")
    spec = det.spec
    vids = _frames(args.streams, args.steps, max(spec.height, 96), max(spec.width, 128))
    per: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for batched in (False, True):
            per[batched].append(_round(bundle, vids, batched, args.threads))
    a, b = statistics.median(per[False]), statistics.median(per[True])
    print(f"{det.describe()}")
    print(f"{args.streams} streams x {args.steps} frames, {args.rounds} interleaved rounds (median):")
    print(f"  one call per stream : {a * 1e3:8.2f} ms per frame")
    print(f"  one batched call    : {b * 1e3:8.2f} ms per frame")
    print(f"  speed-up            : {a / b:8.2f}x")


if __name__ == "__main__":
    main()
