"""torch backend: runs a training checkpoint (`vadedge train` output), or a stream model in memory,
through its MODEL PROTOCOL (train/protocols.py `StreamModel`).

For research and for checking an exported bundle against its source model; needs vadedge[train].
A checkpoint has no score calibration, so pass a threshold (or run through a bundle for events).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..._optional import require
from ..._version import __version__
from ...bundle import Bundle, BundleError, GraphSpec, InputSection, Manifest, ScoreSpec, SideInputSpec, TensorSpec
from ...errors import ConfigError
from .base import Backend, BackendOutput, GraphIO

if TYPE_CHECKING:
    from vadedge.train.protocols import StreamModel

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
    raise BundleError(
        f"no training checkpoint found for bundle {bundle.path} (looked in "
        f"{', '.join(str(c) for c in cands)}); the torch backend and MPN adaptation need it"
    )


def model_graph(model: Any, state: Mapping[str, np.ndarray], *, adaptable: bool = False) -> GraphSpec:
    """The `graph` section of a torch stream model (train/protocols.py StreamModel): its state items, score
    components and host side inputs, keyed by the same names as an exported graph; with `adaptable`, an
    AdaptableModel's θ as explicit parameter inputs (their values are then part of the runner's state)."""
    from vadedge.train.protocols import AdaptableModel, HostInputs

    items = [TensorSpec(k, f"{k}_in", f"{k}_out", tuple(np.shape(v))) for k, v in state.items()]
    params = []
    if adaptable and isinstance(model, AdaptableModel):
        params = [TensorSpec(n, n, n, tuple(p.shape)) for n, p in model.adaptable_parameters().items()]
    side = [
        SideInputSpec(k, k, tuple(v["shape"]), provider=v.get("provider"))
        for k, v in (model.side_inputs if isinstance(model, HostInputs) else {}).items()
    ]
    return GraphSpec(
        batch="dynamic",
        frames_input="frames",
        state=tuple(items),
        params=tuple(params),
        scores={c: c for c in model.score_components},
        extra_outputs={"error_map": "error_map"},
        side_inputs=tuple(side),
    )


def numpy_state(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Torch tensors (or arrays) by name as numpy arrays on the host."""
    torch = require("torch")
    return {k: v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v) for k, v in state.items()}


def bundle_from_checkpoint(path: str | Path) -> Bundle:
    """An in-memory bundle description of a checkpoint folder (uncalibrated, dynamic batch)."""
    from vadedge.train.protocols import AdaptableModel

    from ..sampling import trained_fps

    ckpt = _load(Path(path))
    model = ckpt.model
    state = numpy_state(ckpt.state)
    graph = model_graph(model, state, adaptable=True)
    if isinstance(model, AdaptableModel):
        state.update(numpy_state(model.adaptable_parameters()))
    manifest = Manifest(
        family=ckpt.config.get("name", "unknown"),
        preset=ckpt.config.get("preset"),
        input=InputSection(**model.spec.to_dict(), clip_length=int(model.clip_length), fps=trained_fps(ckpt.config)),
        graph=graph,
        models={"fp32": "model.safetensors"},
        state_file="state.safetensors",
        score=ScoreSpec(
            signs={k: int(v) for k, v in model.score_components.items()},
            weights={k: float(v) for k, v in model.score_weights.items()},
        ),
        provenance={"vadedge_version": __version__, "checkpoint": {"name": ckpt.config.get("name")}},
    ).validated()
    return Bundle(Path(path), manifest, state)


class TorchBackend(Backend):
    """`model.stream_step` under torch.inference_mode; params (MPN θ') are shared by a call's clips.

    Two ways in: a bundle whose checkpoint it loads (`vadedge run --backend torch`), or `for_model`, a
    stream model already in memory (the torch reference that export parity tests and experiments run
    through `StreamRunner.for_torch`)."""

    name = "torch"
    graph: GraphSpec  # the model's graph section (the bundle's, or built from the model by `for_model`)
    ckpt: Any  # the loaded checkpoint, None for `for_model`
    model: Any  # the StreamModel that runs

    def __init__(self, bundle: Bundle, *, device: str = "cpu", threads: Optional[int] = None) -> None:
        super().__init__(bundle)
        self.graph = bundle.manifest.graph
        self._setup(device, threads)
        self.ckpt = _load(checkpoint_of(bundle))
        self.model = self.ckpt.model.to(device)

    @classmethod
    def for_model(
        cls, model: StreamModel, state: Mapping[str, Any], *, device: str = "cpu", threads: Optional[int] = None
    ) -> TorchBackend:
        """A backend for a stream model in memory, run as it is (its own weights; an adapted scorer such
        as MPN's `adapt_stream` result carries its θ'), so the graph takes no adapted parameters.

        `state`: the model's unbatched stream state by name (tensors or arrays; only names and shapes are
        read here, the runner carries the values). The model is not moved: put it on `device` first."""
        self = cls.__new__(cls)
        graph = model_graph(model, numpy_state(state))
        Backend.__init__(self, None, GraphIO.from_graph(graph))
        self.graph = graph
        self.label = f"model {type(model).__name__}"
        self._setup(device, threads)
        self.ckpt = None
        self.model = model
        return self

    def _setup(self, device: str, threads: Optional[int]) -> None:
        if device.startswith("tensorrt"):
            raise ConfigError("the torch backend runs on cpu or cuda[:N]")
        self.torch = require("torch")
        if threads:
            self.torch.set_num_threads(int(threads))
        self.device = device

    @property
    def batch(self) -> Optional[int]:
        return None

    @property
    def params_batched(self) -> bool:
        return False

    def run(
        self,
        frames: np.ndarray,
        state: Mapping[str, np.ndarray],
        params: Optional[Mapping[str, np.ndarray]] = None,
        side: Optional[Mapping[str, np.ndarray]] = None,
    ) -> BackendOutput:
        torch = self.torch
        with torch.inference_mode():
            x = self._tensor(frames)
            st = {k: self._tensor(v, np.float32) for k, v in state.items()}
            kw: dict[str, Any] = {k: self._tensor(v) for k, v in (side or {}).items()}
            if params:
                kw["params"] = {k: self._tensor(v) for k, v in params.items()}
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

    def _tensor(self, array: np.ndarray, dtype: Optional[type] = None) -> Any:
        """A host array as a tensor on the device (read-only views, e.g. broadcast clips, are copied first:
        torch tensors are always writable)."""
        a = np.ascontiguousarray(array, dtype=dtype)
        return self.torch.from_numpy(a if a.flags.writeable else a.copy()).to(self.device)
