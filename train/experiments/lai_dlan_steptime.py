"""Cost of one Lai / DLAN-AC training step side by side with an MNAD step (same run, same input).

Prints wall and process-CPU seconds (median of --repeats after one warm-up) of one training step at
the preset's batch size and one scoring step (batch 1) for `mnad-pred`, `lai` and `dlan-ac` (formal
stage, M = 13 as the paper's Ped2 value), each as a ratio to MNAD, plus the Adaptive Clusterer's
SOM on features of the preset's shape. A known MNAD epoch time converts into Lai / DLAN-AC times.
Frames come from DATA/training (resized to the preset input) or are random when --data is omitted.

    python -m vadedge.train.experiments.lai_dlan_steptime --data ../shared/datasets/ped2 --preset edge-s --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Optional

import numpy as np
import torch

from vadedge.bench.timing import median_time

from ..memory import l2_normalize
from ..registry import get_model_entry, resolve_config
from ..som import adaptive_cluster

FAMILIES = ("mnad-pred", "lai", "dlan-ac")


def _clips(data: Optional[str], spec, clip_length: int, batch: int) -> torch.Tensor:
    n = clip_length + batch - 1
    if data is None:
        frames = np.random.default_rng(0).integers(0, 256, (n, spec.height, spec.width, spec.channels), dtype=np.uint8)
    else:
        from vadedge.datasets import open_split

        video = open_split(data, "training").videos[0]
        if video.frame_files is not None:
            video.frame_files = video.frame_files[:n]
        frames = video.load(spec)[:n]
    return torch.from_numpy(np.stack([frames[i : i + clip_length] for i in range(batch)]))


def _train_step(task, clips: torch.Tensor, opt: torch.optim.Optimizer) -> None:
    loss, _ = task.training_step(clips)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure(
    data: Optional[str] = None, preset: str = "edge-s", repeats: int = 3, threads: Optional[int] = None
) -> dict[str, dict[str, float]]:
    if threads:
        torch.set_num_threads(threads)
    out: dict[str, dict[str, float]] = {}
    for name in FAMILIES:
        torch.manual_seed(0)
        cfg = resolve_config(name, preset)
        entry = get_model_entry(name)
        net = entry.build(cfg["model"])
        if name == "dlan-ac":
            net.set_clusters(l2_normalize(torch.randn(net.num_clusters, net.feature_dim)), 13)
        task = entry.task(net, cfg["train"], generator=torch.Generator().manual_seed(0))
        opt = torch.optim.Adam(net.parameters(), lr=cfg["train"]["lr"])
        clips = _clips(data, net.spec, net.clip_length, cfg["train"]["batch_size"])

        net.train()
        wall, cpu = median_time(partial(_train_step, task, clips, opt), repeats)
        net.eval()
        state = {k: v.unsqueeze(0) for k, v in net.initial_state().items()}
        with torch.inference_mode():
            s_wall, s_cpu = median_time(partial(net.stream_step, clips[:1], state), repeats)
        out[name] = {
            "batch": cfg["train"]["batch_size"],
            "train_wall_s": wall,
            "train_cpu_s": cpu,
            "score_wall_s": s_wall,
            "score_cpu_s": s_cpu,
        }
        if name == "dlan-ac":
            with torch.no_grad():
                q = net.encode(torch.zeros(1, net.spec.frames * net.spec.channels, net.spec.height, net.spec.width))[0]
            feats = np.random.default_rng(0).normal(size=(512, *q.shape[1:])).astype(np.float32)
            feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
            c0 = time.process_time()
            adaptive_cluster(feats, net.num_clusters, iterations=cfg["train"]["som_iterations"], seed=0)
            out[name]["som_cpu_s"] = time.process_time() - c0
    base = out["mnad-pred"]["train_cpu_s"]
    for r in out.values():
        r["train_cpu_vs_mnad"] = r["train_cpu_s"] / base
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--preset", default="edge-s")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    res = measure(args.data, args.preset, args.repeats, args.threads)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    for name, r in res.items():
        extra = f"  SOM {r['som_cpu_s']:.1f} s CPU" if "som_cpu_s" in r else ""
        print(
            f"{name:10s} train step (batch {r['batch']}) {r['train_cpu_s'] * 1e3:7.0f} ms CPU "
            f"({r['train_cpu_vs_mnad']:.2f}x mnad-pred), {r['train_wall_s'] * 1e3:7.0f} ms wall | "
            f"score step {r['score_cpu_s'] * 1e3:6.1f} ms CPU{extra}"
        )


if __name__ == "__main__":
    main()
