"""The deployable artifact (DESIGN principle 4): a folder with ONNX model(s), `state.npz` and `vadedge.json`.

`vadedge.json` is versioned (`schema_version`) and validated on load with a small built-in checker,
so the runtime needs no extra dependency; `BUNDLE_JSON_SCHEMA` is the same contract as a JSON
Schema for other tools (a test keeps the two in agreement). Example:

    {
      "schema_version": 1,
      "family": "mnad-pred", "preset": "edge-s",
      "precision": "int8",                           # optional: the model to run by default
      "input": {"height": 128, "width": 128, "color": "gray", "frames": 4, "clip_length": 5},
      "graph": {
        "batch": 1,                                  # static batch (streams per call) or "dynamic"
        "frames_input": "frames",                    # uint8 [B, clip_length, H, W, C]
        "state": [{"name": "memory", "input": "memory_in", "output": "memory_out",
                   "shape": [10, 32], "dtype": "float32"}],
        "params": [],                                # MPN: adapted parameters fed as inputs
        "scores": {"psnr": "psnr", "feature_distance": "feature_distance"},  # component -> output [B]
        "extra_outputs": {"error_map": "error_map"}  # optional, e.g. error map [B, h, w], pred frame
      },
      "models": {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"},
      "engines": [{"file": "orin.engine", "precision": "fp16", "tensorrt": "10.3.0", "device": "Orin"}],
      "state_file": "state.npz",
      "score": {
        "signs": {"psnr": -1, "feature_distance": 1},      # +1: larger = more anomalous
        "weights": {"psnr": 0.6, "feature_distance": 0.4},
        "calibration": {"psnr": {"location": 31.2, "scale": 1.1}, ...} | null,
        "smoothing": 0.3,                                  # causal EMA factor (1 = none)
        "threshold": {"on": 3.0, "off": 2.0, "policy": "false_alarm_rate", "target": 0.01} | null,
        "min_event_frames": 5
      },
      "provenance": {"vadedge_version": "0.1.0", "opset": 17, "created": "…", ...}
    }
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import VadedgeError
from .preprocess import InputSpec

SCHEMA_VERSION = 1
BUNDLE_FILE = "vadedge.json"
PRECISIONS = ("fp32", "fp16", "int8")


class BundleError(VadedgeError):
    """A bundle folder that is missing, incomplete, or whose vadedge.json breaks the schema."""


_STATE_ITEM = {
    "type": "object",
    "required": ["name", "input", "output", "shape", "dtype"],
    "properties": {
        "name": {"type": "string"}, "input": {"type": "string"}, "output": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "dtype": {"type": "string", "enum": ["float32", "float16"]},
    },
}
_STATS = {"type": "object", "required": ["location", "scale"],
          "properties": {"location": {"type": "number"}, "scale": {"type": "number", "exclusiveMinimum": 0}}}

BUNDLE_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vadedge bundle",
    "type": "object",
    "required": ["schema_version", "family", "input", "graph", "models", "state_file", "score", "provenance"],
    "properties": {
        "schema_version": {"type": "integer", "const": SCHEMA_VERSION},
        "family": {"type": "string"},
        "precision": {"type": "string", "enum": list(PRECISIONS)},  # the model the bundle was exported to run
        "preset": {"type": ["string", "null"]},
        "input": {
            "type": "object", "required": ["height", "width", "color", "frames", "clip_length"],
            "properties": {
                "height": {"type": "integer", "minimum": 8}, "width": {"type": "integer", "minimum": 8},
                "color": {"type": "string", "enum": ["gray", "rgb", "bgr"]},
                "frames": {"type": "integer", "minimum": 1}, "clip_length": {"type": "integer", "minimum": 1},
            },
        },
        "graph": {
            "type": "object", "required": ["batch", "frames_input", "state", "params", "scores"],
            "properties": {
                "batch": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "dynamic"}]},
                "frames_input": {"type": "string"},
                "state": {"type": "array", "items": _STATE_ITEM},
                "params": {"type": "array", "items": _STATE_ITEM},
                # host-computed inputs [B, *shape] (e.g. MAAM-Net's optical flow; "provider" names it)
                "side_inputs": {"type": "array", "items": {
                    "type": "object", "required": ["name", "input", "shape", "dtype"],
                    "properties": {"name": {"type": "string"}, "input": {"type": "string"},
                                   "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                                   "dtype": {"type": "string", "enum": ["float32"]},
                                   "provider": {"type": "object"}}}},
                "scores": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}},
                "extra_outputs": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "models": {"type": "object", "minProperties": 1,
                   "propertyNames": {"enum": list(PRECISIONS)}, "additionalProperties": {"type": "string"}},
        "engines": {"type": "array", "items": {"type": "object", "required": ["file", "precision"],
                                               "properties": {"file": {"type": "string"},
                                                              "precision": {"type": "string"}}}},
        "state_file": {"type": "string"},
        "score": {
            "type": "object", "required": ["signs", "weights"],
            "properties": {
                "signs": {"type": "object", "additionalProperties": {"type": "integer", "enum": [-1, 1]}},
                "weights": {"type": "object", "additionalProperties": {"type": "number"}},
                "calibration": {"oneOf": [{"type": "null"},
                                          {"type": "object", "additionalProperties": _STATS}]},
                "smoothing": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "threshold": {"oneOf": [{"type": "null"},
                                        {"type": "object", "required": ["on", "off"],
                                         "properties": {"on": {"type": "number"}, "off": {"type": "number"}}}]},
                "min_event_frames": {"type": "integer", "minimum": 1},
            },
        },
        "provenance": {"type": "object", "required": ["vadedge_version"]},
    },
}


def _type_ok(value: Any, spec: dict) -> bool:
    t = spec.get("type")
    if t is None:
        return True
    types = t if isinstance(t, list) else [t]
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "null": lambda v: v is None,
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
    return any(checks[x](value) for x in types)


def _validate(value: Any, spec: dict, where: str) -> None:
    """A small JSON-Schema subset (type, required, properties, items, enum, const, min/max, oneOf)."""
    if "oneOf" in spec:
        errors = []
        for option in spec["oneOf"]:
            try:
                _validate(value, option, where)
                return
            except BundleError as exc:
                errors.append(str(exc))
        raise BundleError(f"{where}: {value!r} matches none of the allowed forms ({'; '.join(errors)})")
    if "const" in spec and value != spec["const"]:
        raise BundleError(f"{where} must be {spec['const']!r}, got {value!r}")
    if not _type_ok(value, spec):
        raise BundleError(f"{where} must be of type {spec['type']}, got {type(value).__name__}")
    if "enum" in spec and value not in spec["enum"]:
        raise BundleError(f"{where} must be one of {spec['enum']}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in spec and value < spec["minimum"]:
            raise BundleError(f"{where} must be >= {spec['minimum']}, got {value}")
        if "maximum" in spec and value > spec["maximum"]:
            raise BundleError(f"{where} must be <= {spec['maximum']}, got {value}")
        if "exclusiveMinimum" in spec and value <= spec["exclusiveMinimum"]:
            raise BundleError(f"{where} must be > {spec['exclusiveMinimum']}, got {value}")
    if isinstance(value, dict):
        for key in spec.get("required", []):
            if key not in value:
                raise BundleError(f"{where} is missing '{key}'")
        if "minProperties" in spec and len(value) < spec["minProperties"]:
            raise BundleError(f"{where} must not be empty")
        if "propertyNames" in spec:
            for key in value:
                _validate(key, spec["propertyNames"], f"{where} key")
        props = spec.get("properties", {})
        for key, sub in value.items():
            if key in props:
                _validate(sub, props[key], f"{where}.{key}")
            elif "additionalProperties" in spec:
                _validate(sub, spec["additionalProperties"], f"{where}.{key}")
    if isinstance(value, list) and "items" in spec:
        for i, item in enumerate(value):
            _validate(item, spec["items"], f"{where}[{i}]")


def validate_manifest(doc: Any) -> None:
    """Raise BundleError naming the first problem in a vadedge.json document."""
    if isinstance(doc, dict) and doc.get("schema_version") not in (None, SCHEMA_VERSION):
        raise BundleError(f"vadedge.json has schema_version {doc.get('schema_version')}; this vadedge reads "
                          f"version {SCHEMA_VERSION} (upgrade vadedge or re-export the bundle)")
    _validate(doc, BUNDLE_JSON_SCHEMA, "vadedge.json")
    score = doc["score"]
    comps = set(doc["graph"]["scores"])
    for key in ("signs", "weights"):
        if set(score[key]) != comps:
            raise BundleError(f"vadedge.json: score.{key} names {sorted(score[key])} but the graph outputs "
                              f"scores {sorted(comps)}")
    if "precision" in doc and doc["precision"] not in doc["models"]:
        raise BundleError(f"vadedge.json: precision is {doc['precision']!r} but models has only "
                          f"{sorted(doc['models'])}")
    if score.get("calibration") is not None and set(score["calibration"]) != comps:
        raise BundleError(f"vadedge.json: score.calibration covers {sorted(score['calibration'])}, "
                          f"expected {sorted(comps)}")


@dataclass
class Bundle:
    """A loaded bundle: the validated manifest, its folder and the initial per-stream state."""

    path: Path
    manifest: dict
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.manifest["input"])

    @property
    def clip_length(self) -> int:
        return int(self.manifest["input"]["clip_length"])

    @property
    def precision(self) -> str:
        """The precision the bundle was exported to run (`precision`), else fp32, else its only model."""
        models = self.manifest["models"]
        return self.manifest.get("precision") or ("fp32" if "fp32" in models else next(iter(models)))

    def model_file(self, precision: str = "fp32") -> Path:
        models = self.manifest["models"]
        if precision not in models:
            raise BundleError(f"bundle {self.path} has no {precision} model (has: {', '.join(models)})")
        return self.path / models[precision]


def save_bundle(path: str | Path, manifest: dict, state: dict[str, np.ndarray]) -> Path:
    """Validate and write vadedge.json + the state file into `path` (model files are written by the exporter)."""
    path = Path(path)
    validate_manifest(manifest)
    path.mkdir(parents=True, exist_ok=True)
    np.savez(path / manifest["state_file"], **{k: np.asarray(v) for k, v in state.items()})
    tmp = path / (BUNDLE_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path / BUNDLE_FILE)
    return path


def load_bundle(path: str | Path, check_files: bool = True) -> Bundle:
    """Read and validate a bundle folder; BundleError names what is missing or wrong."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist or is not a folder")
    mpath = path / BUNDLE_FILE
    if not mpath.is_file():
        raise BundleError(f"{path} is not a vadedge bundle (no {BUNDLE_FILE})")
    try:
        manifest = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from exc
    validate_manifest(manifest)
    if check_files:
        for precision, fname in manifest["models"].items():
            if not (path / fname).is_file():
                raise BundleError(f"bundle {path}: {precision} model file {fname} is missing")
    state: dict[str, np.ndarray] = {}
    spath = path / manifest["state_file"]
    if manifest["graph"]["state"] or manifest["graph"]["params"]:
        if not spath.is_file():
            raise BundleError(f"bundle {path}: state file {manifest['state_file']} is missing")
        try:
            with np.load(spath, allow_pickle=False) as npz:
                state = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"bundle {path}: cannot read {manifest['state_file']}: {exc}") from exc
        for item in manifest["graph"]["state"] + manifest["graph"]["params"]:
            arr = state.get(item["name"])
            if arr is None:
                raise BundleError(f"bundle {path}: {manifest['state_file']} has no '{item['name']}'")
            if list(arr.shape) != list(item["shape"]):
                raise BundleError(f"bundle {path}: '{item['name']}' has shape {list(arr.shape)}, "
                                  f"vadedge.json says {item['shape']}")
    return Bundle(path, manifest, state)
