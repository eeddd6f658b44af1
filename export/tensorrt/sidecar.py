"""The JSON sidecar written beside every engine (plain plan, no header: trtexec and DeepStream read it).

`model.fp16.engine` -> `model.fp16.engine.json` with the build facts a runtime needs to decide whether
the engine fits the machine (TensorRT version, GPU, precision, I/O tensors, plugin libraries) and the
SHA-256 of the plan so a corrupt or swapped engine is caught before TensorRT sees it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from ._trt import EngineError

SIDECAR_SCHEMA = "vadedge-engine/1"
_REQUIRED = ("schema", "engine", "engine_sha256", "precision", "tensorrt", "device", "inputs", "outputs")


def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def load_sidecar(engine_path: str | Path, *, tensorrt_version: Optional[str] = None,
                 device_name: Optional[str] = None) -> dict:
    """Read and check an engine's sidecar; EngineError names what is missing, corrupt or mismatched.

    With `tensorrt_version` / `device_name` (those of the running machine) it also rejects an engine
    built for another TensorRT (different major.minor, unless version-compatible) or another GPU.
    """
    engine = Path(engine_path)
    side = sidecar_path(engine)
    if not engine.is_file():
        raise EngineError(f"engine {engine} does not exist")
    if not side.is_file():
        raise EngineError(f"engine {engine} has no sidecar {side.name}; rebuild it with vadedge export --engine trt")
    try:
        doc = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"{side} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SIDECAR_SCHEMA:
        raise EngineError(f"{side} is not a vadedge engine sidecar (schema {SIDECAR_SCHEMA} expected)")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise EngineError(f"{side} is missing {', '.join(missing)}")
    if doc["engine"] != engine.name:
        raise EngineError(f"{side} describes {doc['engine']}, not {engine.name}")
    actual = sha256_file(engine)
    if actual != doc["engine_sha256"]:
        raise EngineError(f"engine {engine.name} does not match its sidecar (SHA-256 differs): the file is "
                          f"corrupt or was replaced; rebuild it")
    if tensorrt_version is not None:
        built = ".".join(str(doc["tensorrt"]).split(".")[:2])
        here = ".".join(str(tensorrt_version).split(".")[:2])
        if built != here and not doc.get("version_compatible", False):
            raise EngineError(f"engine {engine.name} was built with TensorRT {doc['tensorrt']} but this machine "
                              f"has {tensorrt_version}; rebuild it here (engines are not portable)")
    if device_name is not None:
        built_dev = (doc.get("device") or {}).get("name")
        if built_dev and built_dev != device_name and not doc.get("hardware_compatibility"):
            raise EngineError(f"engine {engine.name} was built on {built_dev}, this GPU is {device_name}; "
                              f"rebuild it here (or build with hardware compatibility)")
    return doc
