"""On-device few-shot adaptation (MPN, docs/design.md §6) — the seam between runtime and training code.

One Meta-SGD step on the bundle's adaptable parameters θ from K clips of a stream, computed by
`vadedge.train.adapt.adapt` with the model's learned step sizes α. Needs torch and the model's
checkpoint (BUNDLE/checkpoint, `provenance.checkpoint`, or a checkpoint folder loaded directly);
the result is plain numpy arrays that the detector feeds to the backend (ONNX Runtime: graph
inputs; TensorRT: refit). Manifest `graph.params[*].name` must be the torch parameter names.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .._optional import require
from ..bundle import Bundle, BundleError
from ..errors import DataError, MissingDependencyError


def adapt_parameters(bundle: Bundle, clips: np.ndarray, base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """θ' from uint8 clips (K, clip_length, H, W, C), starting from the bundle's θ (`base`)."""
    clips = np.asarray(clips)
    n = bundle.clip_length
    spec = bundle.input_spec
    want = (n, spec.height, spec.width, spec.channels)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[1:] != want:
        raise DataError(
            f"adaptation clips must be uint8 (K, {', '.join(map(str, want))}), got {clips.dtype} {clips.shape}"
        )
    try:
        torch = require("torch")
        from vadedge.train.adapt import adapt
        from vadedge.train.protocols import AdaptableModel
    except (MissingDependencyError, ImportError) as exc:
        raise MissingDependencyError(
            "MPN adaptation needs torch and the MPN model code (vadedge.train): pip install 'vadedge[train]'"
        ) from exc
    from .backends.torch import _load, checkpoint_of

    model = _load(checkpoint_of(bundle)).model
    if not isinstance(model, AdaptableModel):
        raise BundleError(f"the checkpoint of {bundle.path} ({bundle.manifest.family}) is not adaptable")
    alphas = model.alphas()
    unknown = [k for k in base if k not in alphas]
    if unknown:
        raise BundleError(f"bundle {bundle.path}: parameters {unknown} are not adaptable parameters of its model")
    params = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in base.items()}
    new = adapt(model, params, {k: alphas[k] for k in base}, torch.from_numpy(np.ascontiguousarray(clips)))
    return {k: new[k].detach().cpu().numpy().astype(np.asarray(base[k]).dtype) for k in base}
