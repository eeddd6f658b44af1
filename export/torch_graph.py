"""The torch side of export: a pure graph module around a model's `stream_step`, ready for torch.onnx.

* `StreamStepGraph` turns the MODEL PROTOCOL (`stream_step(frames, state) -> {"scores", "state", ...}`)
  into a positional function `frames, *state -> *scores, *new_state[, error_map][, pred]`, which is
  what an ONNX graph with state as I/O needs (docs/design.md §1).
* `vadedge_memory_nodes()` makes the memory read / gated update of `vadedge.train.memory` and MPN's
  prototype formation (`vadedge.train.models.mpn_dpu`) appear as single `vadedge`-domain nodes while
  exporting (via `torch.onnx.ops.symbolic*`); the function bodies are attached afterwards
  (`vadedge.export.functions`). Eager results are unchanged.
* `fold_batchnorm` folds eval-mode BatchNorm into the preceding (transposed) convolution so the graph
  has plain Conv nodes — what INT8 Q/DQ and TensorRT want.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterable, Iterator
from typing import Any, Optional

import torch
from torch import nn

from vadedge.errors import ConfigError
from vadedge.train.protocols import AdaptableModel, HostInputs, StreamModel

ERROR_MAP_STRIDE = 4  # error map = per-pixel squared error average-pooled by this factor


def fold_batchnorm(module: nn.Module, keep: Iterable[str] = ()) -> nn.Module:
    """Fold every Conv/ConvTranspose → BatchNorm pair inside nn.Sequential containers (in place, eval mode).

    Pairs owning a parameter named in `keep` (e.g. MPN's adaptable θ, fed as graph inputs) are left alone.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    keep = set(keep)
    for prefix, seq in list(module.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            owned = {
                f"{prefix}.{m}.{p}".lstrip(".")
                for m, mod in ((a, conv), (b, bn))
                if mod is not None
                for p, _ in mod.named_parameters(recurse=False)
            }
            if owned & keep:
                continue
            if (
                isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
                and isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
            ):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                seq._modules[a] = fuse_conv_bn_eval(conv.eval(), bn.eval(), transpose=transpose)
                seq._modules[b] = nn.Identity()
    return module


def _symbolic_read(query: torch.Tensor, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from vadedge.train.memory import memory_scores

    _, read = torch.onnx.ops.symbolic_multi_out(
        "vadedge::MemoryRead",
        [query, memory],
        dtypes=[query.dtype, query.dtype],
        shapes=[query.shape, query.shape],
        version=1,
    )
    # The weights are not a node output; a family that uses them gets them from standard ops
    # (dead code, removed by the optimiser, when unused — as in MNAD).
    weights = torch.softmax(memory_scores(query, memory), dim=-1)
    return read, weights


def _symbolic_update(query: torch.Tensor, memory: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return torch.onnx.ops.symbolic(
        "vadedge::MemoryUpdate", [query, memory, gate.to(torch.bool)], dtype=memory.dtype, shape=memory.shape, version=1
    )


def _symbolic_prototypes(query: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    shape = (query.shape[0], weight.shape[0], query.shape[2])
    return torch.onnx.ops.symbolic(
        "vadedge::PrototypeFormation", [query, weight.to(query.dtype)], dtype=query.dtype, shape=shape, version=1
    )


def _swaps() -> dict:
    """Original function -> symbolic stand-in (MPN's unit only when its module is importable)."""
    from vadedge.train import memory

    swaps = {memory.memory_read: _symbolic_read, memory.memory_update: _symbolic_update}
    try:
        from vadedge.train.models import mpn_dpu
    except ImportError:  # a build without the MPN family
        return swaps
    swaps[mpn_dpu.prototype_formation] = _symbolic_prototypes
    return swaps


@contextlib.contextmanager
def vadedge_memory_nodes() -> Iterator[None]:
    """While active, `memory_read` / `memory_update` / `prototype_formation` (wherever a `vadedge.train`
    module imported them) emit `vadedge::MemoryRead` / `vadedge::MemoryUpdate` /
    `vadedge::PrototypeFormation` nodes instead of their standard-op expansion."""
    swaps = _swaps()
    patched: list[tuple[object, str, object]] = []
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == "vadedge.train" or name.startswith("vadedge.train.")):
            continue
        for attr, value in list(vars(mod).items()):
            if callable(value) and any(value is orig for orig in swaps):
                patched.append((mod, attr, value))
                setattr(mod, attr, swaps[value])
    try:
        yield
    finally:
        for owner, attr, value in patched:
            setattr(owner, attr, value)


def param_input_name(name: str) -> str:
    return f"params.{name}"


class StreamStepGraph(nn.Module):
    """`frames, *state, *side, *params -> *scores, *new_state[, error_map][, pred]`.

    frames: uint8 [B, N, H, W, C]; state: [B, ...] per stream; side: host-computed inputs [B, ...]
    (`model.side_inputs`, e.g. MAAM-Net's flow); params: adapted parameters shared by the call
    (`stream_step(..., params=...)`, MPN). Outputs: scores [B] each, new state, optional maps.
    """

    def __init__(
        self,
        model: nn.Module,
        state_names: list[str],
        score_names: list[str],
        *,
        side_names: Iterable[str] = (),
        param_names: Iterable[str] = (),
        error_map: bool = True,
        pred: bool = False,
        error_map_stride: int = ERROR_MAP_STRIDE,
    ) -> None:
        super().__init__()
        assert isinstance(model, StreamModel), "StreamStepGraph wraps a model with the StreamModel protocol"
        self.model = model
        self.state_names = list(state_names)
        self.score_names = list(score_names)
        self.side_names = list(side_names)
        self.param_names = list(param_names)
        self.error_map = error_map
        self.pred = pred
        self.stride = error_map_stride

    def output_names(self) -> list[str]:
        names = list(self.score_names) + [f"{n}_out" for n in self.state_names]
        return names + (["error_map"] if self.error_map else []) + (["pred"] if self.pred else [])

    def input_names(self) -> list[str]:
        return (
            ["frames"]
            + [f"{n}_in" for n in self.state_names]
            + list(self.side_names)
            + [param_input_name(n) for n in self.param_names]
        )

    def _error_map(self, out: dict) -> torch.Tensor:
        aux = out.get("aux") or {}
        if "error_map" in aux:  # a family may define its own map (e.g. patch errors)
            return aux["error_map"].to(torch.float32)
        pred, target = out.get("pred"), out.get("target")
        if not (torch.is_tensor(pred) and torch.is_tensor(target) and pred.dim() == 4 and pred.shape == target.shape):
            raise ConfigError(
                "error_map needs stream_step to return image 'pred' and 'target' (B, C, H, W) "
                "or aux['error_map']; export with error_map=False"
            )
        err = ((pred.float() - target.float()) * 0.5).pow(2).mean(dim=1, keepdim=True)  # [0,1] units
        return nn.functional.avg_pool2d(err, self.stride).squeeze(1)

    def forward(self, frames: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ns, nside = len(self.state_names), len(self.side_names)
        state = dict(zip(self.state_names, inputs[:ns]))
        kwargs: dict[str, Any] = dict(zip(self.side_names, inputs[ns : ns + nside]))
        if self.param_names:
            kwargs["params"] = dict(zip(self.param_names, inputs[ns + nside :]))
        out = self.model.stream_step(frames, state, **kwargs)
        results = [out["scores"][k].to(torch.float32).reshape(-1) for k in self.score_names]
        results += [out["state"][k] for k in self.state_names]
        if self.error_map:
            results.append(self._error_map(out))
        if self.pred:
            p = out["pred"].float()
            results.append(((p + 1.0) * 0.5).clamp(0.0, 1.0).permute(0, 2, 3, 1))  # B,H,W,C in [0,1]
        return tuple(results)


def side_input_specs(model) -> dict[str, dict]:
    """`model.side_inputs` ({name: {"shape": unbatched, "dtype", ...}}) or {} for families without any."""
    return dict(model.side_inputs) if isinstance(model, HostInputs) else {}


def adaptable_params(model) -> dict[str, torch.Tensor]:
    """Parameters a family adapts per stream and takes as explicit inputs (`adaptable_parameters()`), or {}."""
    if not isinstance(model, AdaptableModel):
        return {}
    return {k: v.detach().clone() for k, v in model.adaptable_parameters().items()}


def prepare_model(model: nn.Module, keep: Iterable[str] = ()) -> nn.Module:
    """An eval-mode deep copy with BatchNorm folded except around parameters in `keep` (original untouched)."""
    m = copy.deepcopy(model).eval()
    return fold_batchnorm(m, keep)


def example_inputs(
    model,
    state: dict[str, torch.Tensor],
    batch: int,
    *,
    side: Iterable[str] = (),
    params: Optional[dict[str, torch.Tensor]] = None,
    frames: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, ...]:
    """(frames uint8 [B,N,H,W,C], *state tiled to [B,...], *side inputs, *params) for tracing."""
    spec = model.spec
    if frames is None:
        g = torch.Generator().manual_seed(0)
        frames = torch.randint(
            0, 256, (batch, model.clip_length, spec.height, spec.width, spec.channels), dtype=torch.uint8, generator=g
        )
    tiled = tuple(v.unsqueeze(0).expand(batch, *v.shape).contiguous() for v in state.values())
    side = list(side)
    host = model.host_inputs(frames) if side and isinstance(model, HostInputs) else {}
    specs = side_input_specs(model)
    side_values = tuple(
        host[k].to(torch.float32) if k in host else torch.zeros(batch, *specs[k]["shape"], dtype=torch.float32)
        for k in side
    )
    return (frames,) + tiled + side_values + tuple((params or {}).values())
