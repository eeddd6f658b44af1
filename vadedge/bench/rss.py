"""Resident memory of the runtime in a fresh interpreter (what a deployment would see).

    python -m vadedge.bench.rss BUNDLE [--backend onnxruntime|torch|tensorrt] [--precision int8]
                                [--frames 20000] [--sample-every 1000]

Loads a Detector, feeds `--frames` synthetic frames (240x360, cycled) through `process()` as one
stream, and prints one JSON line: RSS before loading, after loading, after the first 1,000
frames (or the first sample) and at the end, the growth between those two, and the samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Optional


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--sample-every", type=int, default=0)
    args = ap.parse_args(argv)
    from vadedge.bench.measure import rss_mb, synthetic_frames
    from vadedge.runtime import Detector

    base = rss_mb()
    det = Detector.load(
        args.model,
        backend=args.backend,
        device="cpu" if args.backend != "tensorrt" else "auto",
        precision=args.precision,
        threads=args.threads,
    )
    loaded = rss_mb()
    frames = synthetic_frames(64)
    every = args.sample_every or max(1, args.frames)
    ref_at = min(1000, args.frames)
    samples, ref = [], None
    t1 = time.perf_counter()
    for i in range(args.frames):
        det.process(frames[i % len(frames)])
        if i + 1 == ref_at:
            ref = rss_mb()
        if (i + 1) % every == 0:
            samples.append([i + 1, round(rss_mb(), 2)])
            print(f"frame {i + 1}: RSS {samples[-1][1]:.2f} MB", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t1
    end = rss_mb()
    print(
        json.dumps(
            {
                "backend": args.backend,
                "precision": args.precision,
                "frames": args.frames,
                "rss_import_mb": round(base, 2),
                "rss_loaded_mb": round(loaded, 2),
                "rss_ref_mb": round(ref or end, 2),
                "ref_frame": ref_at,
                "rss_end_mb": round(end, 2),
                "growth_mb": round(end - (ref or end), 2),
                "seconds": round(seconds, 2),
                "samples": samples,
            }
        )
    )


if __name__ == "__main__":
    main()
