"""Adapt an MPN model to a new scene on the device (few-shot, docs/design.md §6).

MPN's meta-learned step sizes let one gradient step on the first K clips of a stream fit the
prototype unit and decoder head to a new camera. The runtime computes the step with torch and
then feeds the adapted parameters to the backend: as graph inputs with ONNX Runtime, by refit with
a refittable TensorRT engine. Needs `pip install 'vadedge[train]'` and the MPN checkpoint.

    # automatic: every stream adapts on its first K clips, then scores with its own parameters
    python examples/adapt_mpn.py runs/mpn-meta --source new_scene.mp4 --k 5
    # a bundle works too when it carries its checkpoint (BUNDLE/checkpoint or provenance.checkpoint)
    python examples/adapt_mpn.py bundle_mpn/ --source rtsp://cam/stream --k 5

`--explicit` shows the manual form: collect K clips yourself and call `det.adapt(stream, clips=...)`.
"""

from __future__ import annotations

import argparse

import numpy as np

from vadedge import Detector, open_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="MPN checkpoint folder (vadedge train --model mpn ...) or MPN bundle")
    ap.add_argument("--source", required=True, help="footage of the new scene (file / folder / camera / URL)")
    ap.add_argument("--k", type=int, default=5, help="clips to adapt on")
    ap.add_argument("--explicit", action="store_true", help="collect the clips and call det.adapt yourself")
    args = ap.parse_args()

    if not args.explicit:
        det = Detector.load(args.model, adapt_k=args.k)
        cam = det.stream("new-scene")
        with open_source(args.source) as src:
            for f in src:
                r = cam.process(f.image, f.timestamp)
                if cam.adapted and r.frame_index % 25 == 0:
                    print(f"frame {r.frame_index}: score {r.score:+.2f} (adapted parameters)")
        return

    det = Detector.load(args.model)
    cam = det.stream("new-scene")
    clips = []
    with open_source(args.source) as src:
        for f in src:
            r = cam.process(f.image, f.timestamp)
            if not r.warmup and len(clips) < args.k:
                clips.append(np.array(cam.ring.clip()))  # the buffered clip (a view; copy it)
                if len(clips) == args.k:
                    theta = det.adapt(cam, clips=np.stack(clips))
                    print(f"adapted {len(theta)} parameter tensors on {args.k} clips")


if __name__ == "__main__":
    main()
