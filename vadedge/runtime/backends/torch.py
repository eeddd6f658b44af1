"""torch backend: runs a training checkpoint (`vadedge train` output) through its MODEL PROTOCOL.

For research and for checking an exported bundle against its source model; needs vadedge[train].
A checkpoint has no score calibration, so pass a threshold (or run through a bundle for events).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..._optional import require
from ..._version import __version__
from ...bundle import Bundle, BundleError, GraphSpec, InputSection, Manifest, ScoreSpec, SideInputSpec, TensorSpec
from ...errors import ConfigError
from .base import Backend, BackendOutput

_CACHE: dict[str, Any] = {}


def _error_map_stride() -> int:
    try:
        from vadedge.export.torch_graph import ERROR_MAP_STRIDE

        return int(ERROR_MAP_STRIDE)
    except ImportError:
        return 4


def _load(path: Path) -> Any:
    key = str(Path(path).resolve())
    if key not in _CACHE:
        require("torch")
        from vadedge.train.checkpoint import load_checkpoint

        _CACHE[key] = load_checkpoint(path)
    return _CACHE[key]


def checkpoint_of(bundle: Bundle) -> Path:
    """The checkpoint folder behind a bundle: the folder itself, BUNDLE/checkpoint, or where the exporter
    recorded it relative to the bundle (provenance.checkpoint.relative_path; the default export location
    MODEL_DIR/bundle gives ".."). Bundles carry no absolute build paths."""
    cands = [bundle.path, bundle.path / "checkpoint"]
    ckpt = bundle.manifest.provenance.get("checkpoint")
    rel = ckpt.get("relative_path") if isinstance(ckpt, dict) else None
    if isinstance(rel, str) and rel and not Path(rel).is_absolute():
        cands.append(bundle.path / rel)
    for c in cands:
        if (c / "config.json").is_file() and (c / "model.safetensors").is_file():
            return c
    raise BundleError(f"no training checkpoint found for bundle {bundle.path} (looked in "
                      f"{', '.join(str(c) for c in cands)}); the torch backend and MPN adaptation need it")


def bundle_from_checkpoint(path: str | Path) -> Bundle:
    """An in-memory bundle description of a checkpoint folder (uncalibrated, dynamic batch)."""
    from vadedge.train.protocols import AdaptableModel, HostInputs

    ckpt = _load(Path(path))
    model = ckpt.model
    state = {k: v.detach().cpu().numpy() for k, v in ckpt.state.items()}
    items = [TensorSpec(k, f"{k}_in", f"{k}_out", tuple(v.shape)) for k, v in state.items()]
    params = []
    if isinstance(model, AdaptableModel):
        for name, p in model.adaptable_parameters().items():
            params.append(TensorSpec(name, name, name, tuple(p.shape)))
            state[name] = p.detach().cpu().numpy()
    side = [SideInputSpec(k, k, tuple(v["shape"]), provider=v.get("provider"))
            for k, v in (model.side_inputs if isinstance(model, HostInputs) else {}).items()]
    manifest = Manifest(
        family=ckpt.config.get("name", "unknown"), preset=ckpt.config.get("preset"),
        input=InputSection(**model.spec.to_dict(), clip_length=int(model.clip_length)),
        graph=GraphSpec(batch="dynamic", frames_input="frames", state=tuple(items), params=tuple(params),
                        scores={c: c for c in model.score_components}, extra_outputs={"error_map": "error_map"},
                        side_inputs=tuple(side)),
        models={"fp32": "model.safetensors"}, state_file="state.safetensors",
        score=ScoreSpec(signs={k: int(v) for k, v in model.score_components.items()},
                        weights={k: float(v) for k, v in model.score_weights.items()}),
        provenance={"vadedge_version": __version__, "checkpoint": {"name": ckpt.config.get("name")}},
    ).validated()
    return Bundle(Path(path), manifest, state)


class TorchBackend(Backend):
    """`model.stream_step` under torch.inference_mode; params (MPN θ') are shared by a call's clips."""

    name = "torch"

    def __init__(self, bundle: Bundle, *, device: str = "cpu", threads: Optional[int] = None) -> None:
        super().__init__(bundle)
        self.torch = require("torch")
        if threads:
            self.torch.set_num_threads(int(threads))
        self.ckpt = _load(checkpoint_of(bundle))
        if device.startswith("tensorrt"):
            raise ConfigError("the torch backend runs on cpu or cuda[:N]")
        self.device = device
        self.model = self.ckpt.model.to(device)

    @property
    def batch(self) -> Optional[int]:
        return None

    @property
    def params_batched(self) -> bool:
        return False

    def run(self, frames: np.ndarray, state: Mapping[str, np.ndarray],
            params: Optional[Mapping[str, np.ndarray]] = None,
            side: Optional[Mapping[str, np.ndarray]] = None) -> BackendOutput:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
            st = {k: torch.from_numpy(np.asarray(v, np.float32)).to(self.device) for k, v in state.items()}
            kw = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in (side or {}).items()}
            if params:
                kw["params"] = {k: torch.from_numpy(np.asarray(v)).to(self.device) for k, v in params.items()}
            out = self.model.stream_step(x, st, **kw)
            scores = {c: out["scores"][c].float().cpu().numpy().reshape(-1) for c, _ in self.io.scores}
            new_state = {k: v.float().cpu().numpy() for k, v in out["state"].items()}
            extras = {}
            aux_map = (out.get("aux") or {}).get("error_map")
            if aux_map is not None:
                extras["error_map"] = aux_map.float().cpu().numpy()
            elif out.get("pred") is not None and out.get("target") is not None:
                # the exported graph's error map: squared error in [0, 1] units, average-pooled
                err = ((out["pred"].float() - out["target"].float()) * 0.5).pow(2).mean(1, keepdim=True)
                err = torch.nn.functional.avg_pool2d(err, _error_map_stride()).squeeze(1)
                extras["error_map"] = err.cpu().numpy()
        return BackendOutput(scores, new_state, extras)
