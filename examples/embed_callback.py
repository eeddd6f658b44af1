"""Embed vadedge in an application: frames from anywhere, a callback per event.

    python examples/embed_callback.py                      # default model, generated clip
    python examples/embed_callback.py clip.mp4 --model bundle/ --snapshots snaps/

The callback runs on the thread that calls `process` — keep it short (queue the work elsewhere)
if it does I/O that may block, e.g. posting to a server.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from vadedge import Detector, Event, open_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", nargs="?", default=None, help="video file / folder / camera0 / rtsp:// URL")
    ap.add_argument("--model", default=None, help="bundle folder (default: the model shipped with vadedge)")
    ap.add_argument("--snapshots", type=Path, default=None, help="save a JPEG of each event's first frame")
    args = ap.parse_args()

    det = Detector.load(args.model)
    print("loaded", det.describe())
    last_frame = {}

    @det.on_event
    def on_event(event: Event) -> None:
        if event.is_open:
            print(
                f"[{event.stream}] anomaly #{event.id} started at frame {event.start_frame} "
                f"(t={event.start_time:.2f}s, score {event.peak_score:.2f})"
            )
            if args.snapshots is not None and "image" in last_frame:
                args.snapshots.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(args.snapshots / f"event{event.id:04d}.jpg"), last_frame["image"])
        else:
            print(
                f"[{event.stream}] anomaly #{event.id} ended at frame {event.end_frame}: "
                f"{event.frames} frames, peak {event.peak_score:.2f} at frame {event.peak_frame}"
            )

    if args.source is None:
        from vadedge.runtime.demo import synthetic_clip

        frames, _ = synthetic_clip()
        source = open_source(list(frames), fps=25)
    else:
        source = open_source(args.source)
    with source:
        for f in source:
            last_frame["image"] = f.image
            r = det.process(f.image, f.timestamp)  # r.score, r.is_anomaly, r.heatmap, r.latency_ms
            if r.frame_index % 50 == 0 and not r.warmup:
                print(f"frame {r.frame_index}: score {r.score:+.2f}, {r.latency_ms:.1f} ms")
    det.finish()  # closes an event still open at the end of the input


if __name__ == "__main__":
    main()
