"""The trainer: Adam + cosine annealing, stream state carried across batches, resumable checkpoints."""
from __future__ import annotations

import json
import math
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vadedge.datasets import open_split
from vadedge.errors import CheckpointError, ConfigError
from vadedge.progress import Progress

from .checkpoint import (MODEL_FILE, STATE_FILE, TRAINER_FILE, load_optimizer_state, load_tensors, read_config,
                         save_checkpoint)
from .data import ClipDataset, fingerprint, make_loader
from .flops import count_parameters, gmac_per_frame
from .protocols import CustomLoader, PreparesData, SelectsParameters, TrainingTask
from .registry import get_model_entry, resolve_config

logger = logging.getLogger(__name__)


def _load_init(path: Path, net: torch.nn.Module, task: TrainingTask) -> None:
    """Start from another checkpoint: matching weights are loaded, new modules keep their init."""
    read_config(path)
    tensors = load_tensors(path / MODEL_FILE)
    own = net.state_dict()
    compatible = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    if not compatible:
        raise CheckpointError(f"--init: no weights in {path} fit this model")
    net.load_state_dict(compatible, strict=False)
    if (path / STATE_FILE).is_file():
        try:
            task.load_state(load_tensors(path / STATE_FILE))
        except (KeyError, RuntimeError):
            pass  # the init checkpoint's state belongs to another stage/family


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
          threads: Optional[int] = None, progress: bool = True, stage: Optional[str] = None,
          init: Optional[str | Path] = None) -> TrainSummary:
    """Train `model` (a registered name) on the normal videos of `data`/training; checkpoint into `out`.

    `stage` is passed to the family's training task (e.g. MPN's pretrain / dpu / meta); `init` starts
    from another checkpoint's weights (non-strict: new modules keep their initialisation) and state.
    Task hooks, all optional: `prepare(dataset)` runs once before training (e.g. clustering),
    `make_loader(dataset, batch_size, seed, workers)` replaces the clip loader (e.g. episodes), and
    `trainable_parameters()` selects what the optimiser updates.
    """
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
    net = entry.build_model(cfg["model"])
    task = entry.make_task(net, tcfg, generator=gen, stage=stage)
    if init is not None and not resume:
        _load_init(Path(init), net, task)

    split = open_split(data, "training")
    dataset = ClipDataset(split, net.spec, net.clip_length)
    if isinstance(task, PreparesData):
        task.prepare(dataset)
    if isinstance(task, CustomLoader):
        loader = task.make_loader(dataset, tcfg["batch_size"], seed, workers)
    else:
        loader = make_loader(dataset, tcfg["batch_size"], shuffle=True, seed=seed, workers=workers)
    steps_per_epoch = max(1, len(loader))
    total_steps = tcfg["epochs"] * steps_per_epoch
    params = list(task.trainable_parameters()) if isinstance(task, SelectsParameters) else list(net.parameters())
    opt = torch.optim.Adam(params, lr=tcfg["lr"], betas=(0.9, 0.999),
                           weight_decay=tcfg.get("weight_decay", 0.0))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    history: list[dict] = []
    if resume:
        net.load_state_dict(load_tensors(out / MODEL_FILE))
        task.load_state(load_tensors(out / STATE_FILE))
        info = load_optimizer_state(out, opt)
        start_epoch = int(info["epoch"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps),
                                                           last_epoch=start_epoch * steps_per_epoch - 1)
        history = info.get("history", [])
        torch.manual_seed(seed + start_epoch)  # fresh but reproducible randomness for the resumed epochs

    cfg.update({
        "data": {"root": str(Path(data).resolve()), "fingerprint": fingerprint(split),
                 "videos": len(split.videos), "clips": len(dataset)},
        "seed": seed,
        "stage": stage if not resume else cfg.get("stage"),
        "init": str(init) if init is not None else cfg.get("init"),
    })
    params = count_parameters(net)
    gmac = gmac_per_frame(net)
    report = Progress(logger, progress)
    t0 = time.time()
    seconds_before = float(history[-1]["seconds"]) if history else 0.0  # training time of earlier runs (resume)
    step = start_epoch * steps_per_epoch
    last_loss = float("nan")
    net.train()
    for epoch in range(start_epoch, tcfg["epochs"]):
        bar = report.bar(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{tcfg['epochs']}")
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
        history.append({"epoch": epoch + 1, **means, "seconds": round(seconds_before + elapsed, 1)})
        report.info(f"epoch {epoch + 1}/{tcfg['epochs']}  " + "  ".join(f"{k} {v:.5f}" for k, v in means.items())
                    + f"  [{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min]")
        save_checkpoint(out, net, task.state(), {**cfg, "parameters": params, "gmac_per_frame": gmac,
                                                 "history": history},
                        optimizer=opt, trainer_state={"epoch": epoch + 1, "step": step, "seed": seed,
                                                      "history": history})
    summary = TrainSummary(model, cfg["preset"], str(out), tcfg["epochs"], step, len(dataset),
                           seconds_before + time.time() - t0, last_loss, params, gmac,
                           start_epoch)
    (out / "train_summary.json").write_text(json.dumps(asdict(summary), indent=1))
    return summary
