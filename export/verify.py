"""Check a bundle's model files against its vadedge.json (names, dtypes, shapes of every graph I/O).

Needs only ONNX Runtime (a runtime dependency), so `vadedge info` and the runtime can use it on a
device without torch. A corrupt model file or a manifest that does not describe its graph raises
`BundleError` naming the file and the mismatch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from vadedge._optional import require
from vadedge.bundle import Bundle, BundleError, load_bundle

_ORT_TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)", "float16": "tensor(float16)"}


def expected_io(manifest: dict) -> tuple[dict[str, tuple[str, list]], list[str]]:
    """({input name: (ort type, shape with 'B' for the batch)}, [required output names]) of a manifest."""
    inp, g = manifest["input"], manifest["graph"]
    channels = 1 if inp["color"] == "gray" else 3
    inputs = {g["frames_input"]: ("uint8", ["B", inp["clip_length"], inp["height"], inp["width"], channels])}
    for item in g["state"] + g.get("side_inputs", []):
        inputs[item["input"]] = (item["dtype"], ["B", *item["shape"]])
    for item in g["params"]:
        inputs[item["input"]] = (item["dtype"], list(item["shape"]))
    outputs = list(g["scores"].values()) + [s["output"] for s in g["state"]] + list(g.get("extra_outputs", {}).values())
    return inputs, outputs


def check_model_io(path: Union[str, Path], manifest: dict) -> None:
    """Raise BundleError if the ONNX file at `path` is unreadable or its I/O differs from `manifest`."""
    from vadedge.runtime.backends.onnxruntime import make_session

    ort = require("onnxruntime")  # a missing onnxruntime is MissingDependencyError, not a corrupt file
    path = Path(path)
    try:
        sess = make_session(path, optimize=False, log_severity=4, ort=ort)
    except Exception as exc:  # ORT raises its own exception types for corrupt files
        raise BundleError(f"{path.name} cannot be loaded by ONNX Runtime (corrupt or not ONNX): "
                          f"{str(exc).splitlines()[0][:300]}") from exc
    want_in, want_out = expected_io(manifest)
    have_in = {i.name: i for i in sess.get_inputs()}
    batch = manifest["graph"]["batch"]
    if set(have_in) != set(want_in):
        raise BundleError(f"{path.name}: graph inputs are {sorted(have_in)} but vadedge.json describes "
                          f"{sorted(want_in)}")
    for name, (dtype, shape) in want_in.items():
        got = have_in[name]
        if got.type != _ORT_TYPES[dtype]:
            raise BundleError(f"{path.name}: input '{name}' is {got.type}, vadedge.json says {dtype}")
        if len(got.shape) != len(shape):
            raise BundleError(f"{path.name}: input '{name}' has rank {len(got.shape)}, vadedge.json says {len(shape)}")
        for axis, (g_dim, w_dim) in enumerate(zip(got.shape, shape)):
            if w_dim == "B":
                if batch == "dynamic":
                    if isinstance(g_dim, int):
                        raise BundleError(f"{path.name}: input '{name}' has a fixed batch {g_dim}, "
                                          f"vadedge.json says dynamic")
                elif g_dim != batch:
                    raise BundleError(f"{path.name}: input '{name}' has batch {g_dim}, vadedge.json says {batch}")
            elif g_dim != w_dim:
                raise BundleError(f"{path.name}: input '{name}' has shape {got.shape}, vadedge.json says "
                                  f"{[batch if d == 'B' else d for d in shape]}")
    have_out = {o.name for o in sess.get_outputs()}
    missing = [o for o in want_out if o not in have_out]
    if missing:
        raise BundleError(f"{path.name}: vadedge.json names outputs {missing} that the graph does not have "
                          f"(it has {sorted(have_out)})")


def check_bundle(path_or_bundle: Union[str, Path, Bundle]) -> Bundle:
    """Validate vadedge.json, the state file and every ONNX model file of a bundle; return the Bundle."""
    b = path_or_bundle if isinstance(path_or_bundle, Bundle) else load_bundle(path_or_bundle)
    for precision in b.manifest["models"]:
        check_model_io(b.model_file(precision), b.manifest)
    for e in b.manifest.get("engines", []):
        if not (b.path / e["file"]).is_file():
            raise BundleError(f"bundle {b.path}: engine file {e['file']} is missing")
    return b
