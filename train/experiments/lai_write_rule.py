"""Does Lai's memory survive its write rule? Mean pairwise cosine of the items and L_dis during training.

Trains `lai` for --steps steps on DATA/training (default: a synthetic scene generated into a temp
folder) with each write rule and prints, every 10 steps, the mean pairwise cosine similarity of the
N items (1.0 = all items identical), how many items are some query's nearest, and L_dis.

    python -m vadedge.train.experiments.lai_write_rule --preset edge-xs --steps 30 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from typing import Optional

import torch

from vadedge.datasets import open_split

from ..data import ClipDataset, make_loader
from ..memory import memory_scores, nearest_item_mask
from ..registry import get_model_entry, resolve_config
from ..trainer import seed_everything


def run(data: str, preset: str, rule: str, steps: int, item_grad: str = "dis") -> list[dict]:
    cfg = resolve_config("lai", preset, None, {"write_rule": rule, "item_grad": item_grad})
    gen = seed_everything(0)
    entry = get_model_entry("lai")
    net = entry.build(cfg["model"])
    task = entry.task(net, cfg["train"], generator=gen)
    ds = ClipDataset(open_split(data, "training"), net.spec, net.clip_length)
    loader = make_loader(ds, cfg["train"]["batch_size"], shuffle=True, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["train"]["lr"])
    rows, it = [], iter(loader)
    for s in range(1, steps + 1):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        loss, logs = task.training_step(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if s % 10 == 0:
            task.flush()
            with torch.no_grad():
                items = net.items()
                n = items.shape[0]
                mean_cos = float(((items @ items.T).sum() - n) / (n * n - n))
                query, _ = net.encode(
                    batch[:, : net.spec.frames]
                    .float()
                    .permute(0, 1, 4, 2, 3)
                    .reshape(batch.shape[0], -1, *batch.shape[2:4])
                    / 127.5
                    - 1
                )
                used = int(
                    nearest_item_mask(memory_scores(query, items.expand(query.shape[0], -1, -1)))
                    .sum((0, 1))
                    .gt(0)
                    .sum()
                )
            rows.append(
                {"rule": rule, "step": s, "mean_cos": mean_cos, "used": used, "dis": logs["dis"], "pred": logs["pred"]}
            )
    return rows


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset root (default: a generated synthetic scene)")
    ap.add_argument("--preset", default="edge-xs")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from vadedge.synthetic import generate_dataset

            data = str(generate_dataset(tmp, train_videos=4, test_videos=1, frames_per_video=60))
        for rule in ("paper", "assigned"):
            for r in run(data, args.preset, rule, args.steps):
                print(
                    f"{r['rule']:9s} step {r['step']:4d}  items' mean cosine {r['mean_cos']:6.3f}  "
                    f"items used {r['used']:3d}  L_dis {r['dis']:10.3f}  L_pred {r['pred']:.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
