"""Several cameras, one Detector: each camera is a stream with its own frame buffer and state, and
the frames of all cameras go through the model in one batched call per time step.

    python examples/multi_camera.py                                  # 3 generated "cameras"
    python examples/multi_camera.py rtsp://cam1/s rtsp://cam2/s --model bundle_b4/

Batching needs a bundle exported with `--batch N` (N streams per call) or `--batch dynamic`; a
batch-1 bundle still works, with one call per camera. Live sources drop stale frames rather than
queueing them, so a slow model never makes the cameras lag behind real time.
"""

from __future__ import annotations

import argparse
import time

from vadedge import Detector, open_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sources", nargs="*", help="one source per camera (default: 3 generated clips)")
    ap.add_argument("--model", default=None, help="bundle folder (default: the model shipped with vadedge)")
    ap.add_argument("--max-frames", type=int, default=None)
    args = ap.parse_args()

    det = Detector.load(args.model)
    det.on_event(
        lambda e: print(
            f"[{e.stream}] event #{e.id} "
            f"{'started' if e.is_open else 'ended'} at frame "
            f"{e.start_frame if e.is_open else e.end_frame}"
        )
    )
    if args.sources:
        sources = [open_source(s) for s in args.sources]
    else:
        from vadedge.synthetic import SceneGenerator

        gen = SceneGenerator(120, 160, seed=7)
        kinds = [None, "speed", "shape"]
        sources = [
            open_source(list(gen.render(150, seed=7000 + i, anomaly=k, anomaly_start=60)[0]), fps=25)
            for i, k in enumerate(kinds)
        ]
    cams = [det.stream(f"cam{i}") for i in range(len(sources))]
    print(f"{det.describe()}; {len(cams)} cameras")
    t0, steps = time.perf_counter(), 0
    try:
        for frames in zip(*sources):  # one frame from every camera per step
            results = det.process_many(
                {cam: f.image for cam, f in zip(cams, frames)}, {cam: f.timestamp for cam, f in zip(cams, frames)}
            )
            steps += 1
            if steps % 50 == 0:
                print("  ".join(f"{n}: {'warm-up' if r.warmup else f'{r.score:+.2f}'}" for n, r in results.items()))
            if args.max_frames and steps >= args.max_frames:
                break
    finally:
        det.finish()
        for s in sources:
            s.close()
    dt = time.perf_counter() - t0
    print(f"{steps} steps x {len(cams)} cameras in {dt:.1f} s ({det.calls} inference calls)")


if __name__ == "__main__":
    main()
