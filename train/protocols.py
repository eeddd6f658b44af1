"""The contracts between a model family and the code that drives it (trainer, evaluator, exporter, registry).

A family registers `build(model_cfg) -> StreamModel` and a task class `TrainingTask` (train/registry.py).
Everything else a family may offer is an optional capability with its own small protocol, checked with
`isinstance` (these are `runtime_checkable`: the check is structural, on the members' presence):

- `StreamModel`: what every family is — frames + state in, score components + state out, per clip.
- `HostInputs`: graph inputs computed on the host next to the frames (MAAM-Net's optical flow).
- `AdaptableModel`: per-stream few-shot adaptation of explicit parameters θ (MPN).
- `TrainingTask`: one optimisation step and the persistent state (memory items, prototypes, ...).
- `PreparesData`, `CustomLoader`, `SelectsParameters`: optional task hooks the trainer calls if present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Optional, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vadedge.preprocess import InputSpec

    from .data import ClipDataset


@runtime_checkable
class StreamModel(Protocol):
    """A family's network as a causal stream scorer (the graph the exporter traces and the runtime runs).

    `stream_step(frames, state, **inputs)` takes uint8 clips (B, clip_length, H, W, C) and the batched state
    and returns {"scores": {component: (B,)}, "state": {name: tensor}, ...} (plus "error"/"pred" maps where the
    family has them); extra keyword inputs are the capabilities' (`host_inputs`, `params`).
    """

    spec: InputSpec

    @property
    def clip_length(self) -> int:
        """Frames per clip (context + the scored frame)."""
        ...

    @property
    def score_components(self) -> dict[str, int]:
        """Score component names and signs: +1 = larger is more anomalous, -1 = more normal."""
        ...

    @property
    def score_weights(self) -> dict[str, float]:
        """Fusion weight of each component."""
        ...

    def initial_state(self) -> dict[str, torch.Tensor]:
        """The unbatched state a new stream starts from."""
        ...

    def stream_step(self, frames: torch.Tensor, state: dict[str, torch.Tensor], **inputs: Any) -> dict:
        """Score one clip per stream and return the next state."""
        ...


@runtime_checkable
class HostInputs(Protocol):
    """A model with graph inputs computed on the host from the clip (e.g. optical flow)."""

    @property
    def side_inputs(self) -> dict[str, dict[str, Any]]:
        """{name: {"shape": unbatched shape, "dtype": ..., ...}} of each host-computed graph input."""
        ...

    def host_inputs(self, frames: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor]:
        """The side inputs for a batch of uint8 clips, passed to `stream_step` as keyword arguments."""
        ...


@runtime_checkable
class AdaptableModel(Protocol):
    """A model that adapts explicit parameters θ per stream on its first clips (few-shot, e.g. MPN's
    Meta-SGD: θ' = θ − α ⊙ ∇L on the first clips)."""

    def adaptable_parameters(self) -> Mapping[str, torch.nn.Parameter]:
        """θ by name: exported as graph inputs, kept per stream by the runtime."""
        ...

    def alphas(self) -> Mapping[str, torch.Tensor]:
        """The learned per-parameter step sizes α (same names and shapes as θ)."""
        ...

    def adapt_stream(self, frames: torch.Tensor | np.ndarray, k: int) -> StreamModel:
        """A scorer for one stream, adapted on its first k clips."""
        ...


@runtime_checkable
class TrainingTask(Protocol):
    """How a family trains: `training_step(batch) -> (loss, {name: float})` plus its persistent state."""

    def training_step(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (the trainer does backward / step) and scalar logs (with "loss")."""
        ...

    def state(self) -> dict[str, torch.Tensor]:
        """The stream state saved with the checkpoint (memory items, prototypes, ...)."""
        ...

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `state()` (resume, --init)."""
        ...


@runtime_checkable
class PreparesData(Protocol):
    """A task with a pass over the training data before the first epoch (e.g. clustering)."""

    def prepare(self, dataset: ClipDataset) -> None: ...


@runtime_checkable
class CustomLoader(Protocol):
    """A task that batches its own way (episodes, precomputed flow) instead of shuffled clips."""

    def make_loader(self, dataset: ClipDataset, batch_size: int, seed: int, workers: Optional[int]) -> Any: ...


@runtime_checkable
class SelectsParameters(Protocol):
    """A task that trains only some parameters (a stage of a multi-stage family)."""

    def trainable_parameters(self) -> Iterable[torch.nn.Parameter]: ...


def missing_members(obj: Any, protocol: type) -> list[str]:
    """Members of `protocol` that `obj` (an instance, or a class for method-only protocols) lacks."""
    names = {n for n in (*vars(protocol), *getattr(protocol, "__annotations__", {})) if not n.startswith("_")}
    return sorted(n for n in names if not hasattr(obj, n))
