"""Cost of MPN's training steps and adaptation, side by side with an MNAD step (same run, same input).

Prints wall and process-CPU seconds per step (median of --repeats after one warm-up) for: MNAD
(`mnad-pred`) training step, MPN pretrain / dpu steps (batch = the preset's), the meta step (the
preset's episodes × 2·shots clips), adapt() for K = 1, 5, 10 (and the frozen backbone's share of
K = 10), and one scoring step — and each as a
ratio to the MNAD step, so a known MNAD epoch time converts into MPN stage times. Frames come from
DATA/training (e.g. Ped2, resized to the preset input) or are random when --data is omitted.

    python -m vadedge.train.experiments.mpn_steptime --data ../shared/datasets/ped2 --preset edge-s --threads 1
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from functools import partial
from typing import Optional

import numpy as np
import torch

from vadedge.bench.timing import median_time

from ..adapt import adapt
from ..registry import get_model_entry, resolve_config


def _frames(data: Optional[str], spec, n: int) -> np.ndarray:
    if data is None:
        return np.random.default_rng(0).integers(0, 256, (n, spec.height, spec.width, spec.channels), dtype=np.uint8)
    from vadedge.datasets import open_split

    video = open_split(data, "training").videos[0]
    if video.frame_files is not None:
        video.frame_files = video.frame_files[:n]
    return video.load(spec)[:n]


def measure(
    data: Optional[str] = None,
    preset: str = "edge-s",
    repeats: int = 3,
    threads: Optional[int] = None,
    model_overrides: Optional[dict] = None,
) -> dict[str, dict[str, float]]:
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = resolve_config("mpn", preset, model_overrides)
    tcfg = cfg["train"]
    mpn_entry = get_model_entry("mpn")
    spec_model = mpn_entry.build(cfg["model"])
    frames = torch.from_numpy(_frames(data, spec_model.spec, 40))
    n = spec_model.clip_length
    clips = torch.stack([frames[i : i + n] for i in range(len(frames) - n + 1)])
    results: dict[str, tuple[float, float]] = {}

    def train_step(task, params, batch):
        opt = torch.optim.Adam(params, lr=1e-6)

        def step():
            loss, _ = task.training_step(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    mnad_cfg = resolve_config("mnad-pred", preset, model_overrides)
    mnad_entry = get_model_entry("mnad-pred")
    mnad = mnad_entry.build(mnad_cfg["model"]).train()
    mnad_task = mnad_entry.task(mnad, mnad_cfg["train"])
    results["mnad_train_step"] = median_time(
        train_step(mnad_task, list(mnad.parameters()), clips[: mnad_cfg["train"]["batch_size"]]), repeats
    )
    rng = np.random.default_rng(0)
    for stage in ("pretrain", "dpu", "meta"):
        model = mpn_entry.build(cfg["model"]).train()
        task = mpn_entry.task(model, dict(tcfg), stage=stage)  # resolves the per-stage batch size
        task.prepare(None)
        bs = int(task.cfg["batch_size"])
        batch: dict[str, torch.Tensor] | torch.Tensor
        if stage == "meta":
            k = int(tcfg["shots"])
            idx = torch.from_numpy(rng.integers(0, len(clips), (bs, 2 * k)))
            batch = {"support": clips[idx[:, :k]], "query": clips[idx[:, k:]]}
        else:
            batch = clips[:bs]
        results[f"mpn_{stage}_step"] = median_time(train_step(task, task.trainable_parameters(), batch), repeats)
    model.eval()
    for k in (1, 5, 10):
        step = partial(adapt, model, model.adaptable_parameters(), model.alphas(), clips[:k])
        results[f"adapt_k{k}"] = median_time(step, repeats)
    results["adapt_k10_frozen_part"] = median_time(lambda: model.adaptation_data(clips[:10]), repeats)
    with torch.inference_mode():
        results["score_step"] = median_time(lambda: model.stream_step(clips[:1], {}), repeats)
    ref_wall, ref_cpu = results["mnad_train_step"]
    return {
        name: {"wall_s": round(w, 4), "cpu_s": round(c, 4), "cpu_ratio_to_mnad_step": round(c / ref_cpu, 3)}
        for name, (w, c) in results.items()
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m vadedge.train.experiments.mpn_steptime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", default=None)
    p.add_argument("--preset", default="edge-s")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    res = measure(a.data, a.preset, a.repeats, a.threads)
    print(f"{'':22s} {'wall s':>8s} {'cpu s':>8s} {'cpu / MNAD step':>16s}")
    for name, r in res.items():
        print(f"{name:22s} {r['wall_s']:8.3f} {r['cpu_s']:8.3f} {r['cpu_ratio_to_mnad_step']:16.2f}")
    print(json.dumps({"preset": a.preset, "threads": torch.get_num_threads(), "data": a.data}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
