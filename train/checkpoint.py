"""Checkpoints as a folder: model.safetensors + state.safetensors + config.json (no pickles).

Resumable training adds optimizer.safetensors and trainer.json. `load_checkpoint` validates the
folder and raises CheckpointError naming what is wrong.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from vadedge._optional import require
from vadedge._version import __version__
from vadedge.errors import CheckpointError

FORMAT = "vadedge-checkpoint/1"
MODEL_FILE, STATE_FILE, CONFIG_FILE = "model.safetensors", "state.safetensors", "config.json"
OPTIM_FILE, TRAINER_FILE = "optimizer.safetensors", "trainer.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    st = require("safetensors.torch")
    tmp = path.with_suffix(".tmp")
    st.save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    st = require("safetensors.torch")
    try:
        return st.load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


@dataclass
class Checkpoint:
    """A loaded checkpoint: the built model (eval mode), its stream state and the full config."""

    model: Any
    state: dict[str, torch.Tensor]
    config: dict
    path: Path


def save_checkpoint(
    out: Path,
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    config: dict,
    optimizer: Optional[torch.optim.Optimizer] = None,
    trainer_state: Optional[dict] = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _save_tensors(model.state_dict(), out / MODEL_FILE)
    _save_tensors(state, out / STATE_FILE)
    if optimizer is not None:
        flat, groups = _flatten_optimizer(optimizer.state_dict())
        _save_tensors(flat, out / OPTIM_FILE)
        _atomic_write_text(out / TRAINER_FILE, json.dumps({**(trainer_state or {}), "param_groups": groups}, indent=1))
    _atomic_write_text(
        out / CONFIG_FILE, json.dumps({"format": FORMAT, "vadedge_version": __version__, **config}, indent=1)
    )


def _flatten_optimizer(sd: dict) -> tuple[dict[str, torch.Tensor], list]:
    flat = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            flat[f"{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return flat, sd["param_groups"]


def load_optimizer_state(path: Path, optimizer: torch.optim.Optimizer) -> dict:
    """Restore the optimizer from a checkpoint folder; returns the trainer.json contents."""
    info = json.loads((path / TRAINER_FILE).read_text())
    flat = load_tensors(path / OPTIM_FILE)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": info["param_groups"]})
    return info


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model directory")
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} is not a vadedge checkpoint (no {CONFIG_FILE})")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if cfg.get("format") != FORMAT or not {"name", "model"} <= set(cfg):
        raise CheckpointError(f"{cfg_path} is not a {FORMAT} config")
    return cfg


def _build(entry, model_cfg: object, path: Path):  # noqa: ANN001, ANN202 - a registry entry -> nn.Module
    """Build the model from config.json's `model` section; a malformed section is a CheckpointError."""
    if not isinstance(model_cfg, dict):
        raise CheckpointError(f"{path / CONFIG_FILE}: 'model' must be an object, got {type(model_cfg).__name__}")
    try:
        return entry.build(model_cfg)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        detail = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"{path / CONFIG_FILE}: malformed 'model' section ({detail})") from exc


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Build the registered model from config.json and load weights and state (eval mode)."""
    from .registry import get_model_entry

    path = Path(path)
    cfg = read_config(path)
    for f in (MODEL_FILE, STATE_FILE):
        if not (path / f).is_file():
            raise CheckpointError(f"{path} is missing {f}")
    model = _build(get_model_entry(cfg["name"]), cfg["model"], path)
    try:
        model.load_state_dict(load_tensors(path / MODEL_FILE))
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path / MODEL_FILE} do not match the config: {exc}") from exc
    model.eval()
    return Checkpoint(model, load_tensors(path / STATE_FILE), cfg, path)
