"""Cameras vs aggregate frames/s and p95 latency, local Detector vs Triton (docs/benchmarks.md).

    VADEDGE_TRITON_STUB_PATH=DIR nice -n 5 python examples/triton_bench.py            # synthetic bundle
    VADEDGE_TRITON_STUB_PATH=DIR nice -n 5 python examples/triton_bench.py --bundle vadedge/assets/default

Needs nvidia-pytriton (the server binary) and vadedge[triton]; see docs/deployment.md for DIR.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from vadedge.serving.bench import compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=None, help="bundle folder (default: a synthetic 128x128 gray bundle)")
    ap.add_argument("--cameras", default="1,4,16")
    ap.add_argument("--frames", type=int, default=60, help="frames per camera")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (local and in the server)")
    ap.add_argument("--instances", default="", help="also dynamic batching with these instance counts, e.g. 2")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            from vadedge.bench.synthetic_bundle import write_synthetic_bundle

            bundle = write_synthetic_bundle(Path(tmp) / "synthetic")
        rows = compare(
            bundle,
            [int(c) for c in args.cameras.split(",")],
            args.frames,
            args.threads,
            instances=[int(n) for n in args.instances.split(",") if n],
        )
    print("| path | cameras | frames/s (all cameras) | p95 latency ms | requests per model call |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(r.format())


if __name__ == "__main__":
    main()
