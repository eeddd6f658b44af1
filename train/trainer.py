"""The trainer: Adam + cosine annealing, stream state carried across batches, resumable checkpoints."""
from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vadedge._optional import require
from vadedge.datasets import open_split
from vadedge.errors import CheckpointError, ConfigError

from .checkpoint import TRAINER_FILE, load_optimizer_state, read_config, save_checkpoint, _load_tensors, MODEL_FILE, STATE_FILE
from .data import ClipDataset, fingerprint, make_loader
from .flops import count_parameters, gmac_per_frame
from .registry import get_model_entry, resolve_config


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainSummary:
    model: str
    preset: str
    out: str
    epochs: int
    steps: int
    samples: int
    seconds: float
    final_loss: float
    parameters: int
    gmac_per_frame: float
    resumed_from_epoch: int = 0

    def format(self) -> str:
        return (f"trained {self.model} ({self.preset}) for {self.epochs} epochs / {self.steps} steps on "
                f"{self.samples} clips in {self.seconds / 60:.1f} min; final loss {self.final_loss:.5f}; "
                f"{self.parameters / 1e6:.2f} M parameters, {self.gmac_per_frame:.3f} GMAC/frame -> {self.out}")


def train(model: str, data: str | Path, out: str | Path, *, preset: Optional[str] = None,
          epochs: Optional[int] = None, seed: int = 0, resume: bool = False, batch_size: Optional[int] = None,
          lr: Optional[float] = None, workers: Optional[int] = None, model_overrides: Optional[dict] = None,
          threads: Optional[int] = None, progress: bool = True) -> TrainSummary:
    """Train `model` (a registered name) on the normal videos of `data`/training; checkpoint into `out`."""
    out = Path(out)
    if threads:
        torch.set_num_threads(threads)
    start_epoch, info = 0, {}
    if resume:
        if not (out / TRAINER_FILE).is_file():
            raise CheckpointError(f"--resume: {out} has no resumable checkpoint ({TRAINER_FILE})")
        cfg = read_config(out)
        if cfg["name"] != model:
            raise ConfigError(f"--resume: {out} holds '{cfg['name']}', not '{model}'")
        if epochs is not None:
            cfg["train"]["epochs"] = epochs
    else:
        cfg = resolve_config(model, preset, model_overrides,
                             {"epochs": epochs, "batch_size": batch_size, "lr": lr})
    tcfg = cfg["train"]
    gen = seed_everything(seed)
    entry = get_model_entry(model)
    net = entry.build(cfg["model"])
    task = entry.task(net, tcfg, generator=gen)

    split = open_split(data, "training")
    dataset = ClipDataset(split, net.spec, net.clip_length)
    loader = make_loader(dataset, tcfg["batch_size"], shuffle=True, seed=seed, workers=workers)
    steps_per_epoch = max(1, len(loader))
    total_steps = tcfg["epochs"] * steps_per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=tcfg["lr"], betas=(0.9, 0.999),
                           weight_decay=tcfg.get("weight_decay", 0.0))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    history: list[dict] = []
    if resume:
        net.load_state_dict(_load_tensors(out / MODEL_FILE))
        task.load_state(_load_tensors(out / STATE_FILE))
        info = load_optimizer_state(out, opt)
        start_epoch = int(info["epoch"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps),
                                                           last_epoch=start_epoch * steps_per_epoch - 1)
        history = info.get("history", [])
        if "torch_rng" in info:
            torch.manual_seed(seed + start_epoch)

    cfg.update({
        "data": {"root": str(Path(data).resolve()), "fingerprint": fingerprint(split),
                 "videos": len(split.videos), "clips": len(dataset)},
        "seed": seed,
    })
    params = count_parameters(net)
    gmac = gmac_per_frame(net)
    tqdm = require("tqdm").tqdm
    t0 = time.time()
    step = start_epoch * steps_per_epoch
    last_loss = float("nan")
    net.train()
    for epoch in range(start_epoch, tcfg["epochs"]):
        bar = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{tcfg['epochs']}",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True, leave=False)
        sums: dict[str, float] = {}
        for batch in bar:
            loss, logs = task.training_step(batch)
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"loss became {loss.item()} at step {step}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{sched.get_last_lr()[0]:.1e}")
        bar.close()
        means = {k: v / steps_per_epoch for k, v in sums.items()}
        last_loss = means.get("loss", float("nan"))
        elapsed = time.time() - t0
        done = epoch + 1 - start_epoch
        eta = elapsed / done * (tcfg["epochs"] - epoch - 1)
        history.append({"epoch": epoch + 1, **means, "seconds": round(elapsed, 1)})
        if progress:
            print(f"epoch {epoch + 1}/{tcfg['epochs']}  " + "  ".join(f"{k} {v:.5f}" for k, v in means.items())
                  + f"  [{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min]", file=sys.stderr, flush=True)
        save_checkpoint(out, net, task.state(), {**cfg, "parameters": params, "gmac_per_frame": gmac,
                                                 "history": history},
                        optimizer=opt, trainer_state={"epoch": epoch + 1, "step": step, "seed": seed,
                                                      "history": history})
    summary = TrainSummary(model, cfg["preset"], str(out), tcfg["epochs"], step, len(dataset),
                           time.time() - t0 + float(info.get("seconds", 0.0)), last_loss, params, gmac,
                           start_epoch)
    (out / "train_summary.json").write_text(json.dumps(asdict(summary), indent=1))
    return summary
