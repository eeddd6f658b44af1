"""Model registry (timm-style): families register a builder, a training task and named presets."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from vadedge.errors import ConfigError

from .protocols import StreamModel, TrainingTask, missing_members


@dataclass
class ModelEntry:
    """A registered family: `build(model_cfg) -> StreamModel`, `task(model, train_cfg, ...) -> TrainingTask`
    (the contracts are in train/protocols.py)."""

    name: str
    build: Callable[[dict], Any]
    task: Callable[..., Any]
    presets: dict[str, dict] = field(default_factory=dict)
    description: str = ""
    default_preset: str = "paper"

    def preset(self, preset: Optional[str]) -> dict:
        """Deep copy of a preset ({'model': {...}, 'train': {...}}); ConfigError if unknown."""
        key = preset or self.default_preset
        if key not in self.presets:
            raise ConfigError(
                f"model '{self.name}' has no preset '{key}'; available: {', '.join(sorted(self.presets))}"
            )
        return copy.deepcopy(self.presets[key])

    def build_model(self, model_cfg: dict) -> StreamModel:
        """`build(model_cfg)`, checked against the StreamModel protocol (TypeError names what is missing)."""
        net = self.build(model_cfg)
        if not isinstance(net, StreamModel):
            raise TypeError(
                f"model '{self.name}' builds a {type(net).__name__} without "
                f"{', '.join(missing_members(net, StreamModel))} (see train/protocols.py StreamModel)"
            )
        return net

    def make_task(self, net: StreamModel, train_cfg: dict, **kwargs: Any) -> TrainingTask:
        """`task(net, train_cfg, **kwargs)`: the family's training task (checked at registration)."""
        return self.task(net, train_cfg, **kwargs)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    task: Callable[..., Any],
    presets: dict[str, dict],
    description: str = "",
    default_preset: str = "paper",
):
    """Decorator registering `build(model_cfg: dict) -> nn.Module` under `name`."""

    if isinstance(task, type) and missing_members(task, TrainingTask):
        raise TypeError(
            f"model '{name}': task {task.__name__} lacks "
            f"{', '.join(missing_members(task, TrainingTask))} (see train/protocols.py TrainingTask)"
        )

    def deco(build: Callable[[dict], Any]):
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' is already registered")
        _REGISTRY[name] = ModelEntry(name, build, task, presets, description, default_preset)
        return build

    return deco


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; registered models: {', '.join(list_models())}")
    return _REGISTRY[name]


def resolve_config(
    name: str, preset: Optional[str], model_overrides: Optional[dict] = None, train_overrides: Optional[dict] = None
) -> dict:
    """Full config {'name', 'preset', 'model', 'train'} for a family + preset + overrides."""
    entry = get_model_entry(name)
    cfg = entry.preset(preset)
    for key, over in (("model", model_overrides), ("train", train_overrides)):
        for k, v in (over or {}).items():
            if v is None:
                continue
            if k not in cfg[key]:
                raise ConfigError(f"unknown {key} option '{k}' for model '{name}'")
            cfg[key][k] = v
    return {"name": name, "preset": preset or entry.default_preset, **cfg}


def create_model(name: str, preset: Optional[str] = None, **model_overrides):
    """Build a registered model from a preset, e.g. create_model('mnad-pred', 'edge-s')."""
    cfg = resolve_config(name, preset, model_overrides)
    return get_model_entry(name).build_model(cfg["model"])
