"""The trainer: Adam + cosine annealing, stream state carried across batches, resumable checkpoints."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from vadedge.datasets import Split, open_split
from vadedge.errors import CheckpointError, ConfigError
from vadedge.progress import Progress

from .checkpoint import (
    MODEL_FILE,
    STATE_FILE,
    TRAINER_FILE,
    load_optimizer_state,
    load_tensors,
    read_config,
    save_checkpoint,
)
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
        return (
            f"trained {self.model} ({self.preset}) for {self.epochs} epochs / {self.steps} steps on "
            f"{self.samples} clips in {self.seconds / 60:.1f} min; final loss {self.final_loss:.5f}; "
            f"{self.parameters / 1e6:.2f} M parameters, {self.gmac_per_frame:.3f} GMAC/frame -> {self.out}"
        )


def train(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    preset: Optional[str] = None,
    epochs: Optional[int] = None,
    seed: int = 0,
    resume: bool = False,
    batch_size: Optional[int] = None,
    lr: Optional[float] = None,
    workers: Optional[int] = None,
    model_overrides: Optional[dict] = None,
    threads: Optional[int] = None,
    progress: bool = True,
    stage: Optional[str] = None,
    init: Optional[str | Path] = None,
    fps: Optional[float] = None,
) -> TrainSummary:
    """Train `model` (a registered name) on the normal videos of `data`/training; checkpoint into `out`.

    `fps`: the frame rate of the footage, recorded as the config's data.fps; the exporter writes it
    into the bundle, whose sources are then sampled at it (default: data.fps of a resumed run, else
    none recorded, which bundles read as 10 fps, the Ped2 rate).

    `stage` is passed to the family's training task (e.g. MPN's pretrain / dpu / meta); `init` starts
    from another checkpoint's weights (non-strict: new modules keep their initialisation) and state.
    The task's optional capabilities (train/protocols.py): `prepare(dataset)` runs once before training
    (e.g. clustering), `make_loader(dataset, batch_size, seed, workers)` replaces the clip loader (e.g.
    episodes), and `trainable_parameters()` selects what the optimiser updates.

    Steps: `_run_config` (new or resumed) -> `_setup` (model, task, data, optimiser) -> `_resume` (weights,
    state, optimiser, schedule, history) -> `_train_epoch` + `_save_epoch` per epoch -> the summary.
    """
    out = Path(out)
    if threads:
        torch.set_num_threads(threads)
    cfg = _run_config(
        model, out, resume, preset, model_overrides, {"epochs": epochs, "batch_size": batch_size, "lr": lr}
    )
    run = _setup(model, cfg, data, seed=seed, stage=stage, init=None if resume else init, workers=workers)
    if resume:
        _resume(run, out, seed)
    data_fps = fps if fps is not None else (cfg.get("data") or {}).get("fps")
    cfg.update(
        {
            "data": {
                "root": str(Path(data).resolve()),
                "fingerprint": fingerprint(run.split),
                "videos": len(run.split.videos),
                "clips": len(run.dataset),
                **({"fps": float(data_fps)} if data_fps is not None else {}),
            },
            "seed": seed,
            "stage": stage if not resume else cfg.get("stage"),
            "init": str(init) if init is not None else cfg.get("init"),
        }
    )
    params = count_parameters(run.net)
    gmac = gmac_per_frame(run.net)
    report = Progress(logger, progress)
    epochs_total = run.tcfg["epochs"]
    t0 = time.time()
    seconds_before = float(run.history[-1]["seconds"]) if run.history else 0.0  # earlier runs' time (resume)
    last_loss = float("nan")
    run.net.train()
    for epoch in range(run.start_epoch, epochs_total):
        means = _train_epoch(run, epoch, report)
        last_loss = means.get("loss", float("nan"))
        elapsed = time.time() - t0
        eta = elapsed / (epoch + 1 - run.start_epoch) * (epochs_total - epoch - 1)
        run.history.append({"epoch": epoch + 1, **means, "seconds": round(seconds_before + elapsed, 1)})
        report.info(
            f"epoch {epoch + 1}/{epochs_total}  "
            + "  ".join(f"{k} {v:.5f}" for k, v in means.items())
            + f"  [{elapsed / 60:.1f} min, ETA {eta / 60:.1f} min]"
        )
        _save_epoch(
            run, out, {**cfg, "parameters": params, "gmac_per_frame": gmac, "history": run.history}, epoch, seed
        )
    summary = TrainSummary(
        model,
        cfg["preset"],
        str(out),
        epochs_total,
        run.step,
        len(run.dataset),
        seconds_before + time.time() - t0,
        last_loss,
        params,
        gmac,
        run.start_epoch,
    )
    (out / "train_summary.json").write_text(json.dumps(asdict(summary), indent=1))
    return summary


@dataclass
class _Run:
    """What one training run works on: built by `_setup`, restored by `_resume`, advanced by `_train_epoch`."""

    tcfg: dict
    net: torch.nn.Module
    task: TrainingTask
    split: Split
    dataset: ClipDataset
    loader: Any
    steps_per_epoch: int
    opt: torch.optim.Optimizer
    sched: Any
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    step: int = 0


def _run_config(
    model: str, out: Path, resume: bool, preset: Optional[str], model_overrides: Optional[dict], train_overrides: dict
) -> dict:
    """The run's config: the checkpoint's own when resuming (only `epochs` may change), else the preset's."""
    if not resume:
        return resolve_config(model, preset, model_overrides, train_overrides)
    if not (out / TRAINER_FILE).is_file():
        raise CheckpointError(f"--resume: {out} has no resumable checkpoint ({TRAINER_FILE})")
    cfg = read_config(out)
    if cfg["name"] != model:
        raise ConfigError(f"--resume: {out} holds '{cfg['name']}', not '{model}'")
    if train_overrides.get("epochs") is not None:
        cfg["train"]["epochs"] = train_overrides["epochs"]
    return cfg


def _setup(
    model: str,
    cfg: dict,
    data: str | Path,
    *,
    seed: int,
    stage: Optional[str],
    init: Optional[str | Path],
    workers: Optional[int],
) -> _Run:
    """Seed, build the model and its task (from `init`'s weights if given), open the data, make the loader,
    optimiser (Adam) and cosine schedule over the whole run."""
    tcfg = cfg["train"]
    gen = seed_everything(seed)
    entry = get_model_entry(model)
    net = entry.build_model(cfg["model"])
    assert isinstance(net, torch.nn.Module), f"{model}: build_model must return a torch module"
    task = entry.make_task(net, tcfg, generator=gen, stage=stage)
    if init is not None:
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
    params = list(task.trainable_parameters()) if isinstance(task, SelectsParameters) else list(net.parameters())
    opt = torch.optim.Adam(params, lr=tcfg["lr"], betas=(0.9, 0.999), weight_decay=tcfg.get("weight_decay", 0.0))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, tcfg["epochs"] * steps_per_epoch))
    return _Run(tcfg, net, task, split, dataset, loader, steps_per_epoch, opt, sched)


def _resume(run: _Run, out: Path, seed: int) -> None:
    """Continue the run in `out`: weights, task state, optimiser, schedule position and history."""
    run.net.load_state_dict(load_tensors(out / MODEL_FILE))
    run.task.load_state(load_tensors(out / STATE_FILE))
    info = load_optimizer_state(out, run.opt)
    run.start_epoch = int(info["epoch"])
    run.step = run.start_epoch * run.steps_per_epoch
    run.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        run.opt, T_max=max(1, run.tcfg["epochs"] * run.steps_per_epoch), last_epoch=run.step - 1
    )
    run.history = info.get("history", [])
    torch.manual_seed(seed + run.start_epoch)  # fresh but reproducible randomness for the resumed epochs


def _train_epoch(run: _Run, epoch: int, report: Progress) -> dict[str, float]:
    """One pass over the loader (a bar on a terminal); returns the mean of each logged value per step."""
    bar = report.bar(run.loader, total=run.steps_per_epoch, desc=f"epoch {epoch + 1}/{run.tcfg['epochs']}")
    sums: dict[str, float] = {}
    for batch in bar:
        loss, logs = run.task.training_step(batch)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"loss became {loss.item()} at step {run.step}; lower the learning rate")
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        run.step += 1
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{run.sched.get_last_lr()[0]:.1e}")
    bar.close()
    return {k: v / run.steps_per_epoch for k, v in sums.items()}


def _save_epoch(run: _Run, out: Path, config: dict, epoch: int, seed: int) -> None:
    """Checkpoint after an epoch: weights, task state, config and what `_resume` needs."""
    save_checkpoint(
        out,
        run.net,
        run.task.state(),
        config,
        optimizer=run.opt,
        trainer_state={"epoch": epoch + 1, "step": run.step, "seed": seed, "history": run.history},
    )
