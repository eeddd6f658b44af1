"""The deployable artifact (docs/design.md §4, §9): a folder with ONNX model(s), `state.npz` and `vadedge.json`.

`vadedge.json` is versioned (`schema_version`) and parsed ONCE into a typed, frozen `Manifest`
(`Manifest.from_dict` validates, `Manifest.to_dict` writes), so the runtime needs no extra
dependency and no code reads the JSON by string keys. `BUNDLE_JSON_SCHEMA` is the structural part
of the same contract as a JSON Schema for other tools (a test keeps the two in agreement); the
cross-field checks (components agree, finite numbers, bounded sizes, file names inside the
folder) live in `Manifest.from_dict`.

A bundle is an artifact users download and share, so loading one never reads outside its folder
(every file name is a relative path that must stay inside it after resolving symlinks), never
accepts NaN/Infinity, and bounds every size it will allocate for (frame buffers, state arrays).
Example:

    {
      "schema_version": 1,
      "family": "mnad-pred", "preset": "edge-s",
      "precision": "int8",                           # optional: the model to run by default
      "input": {"height": 128, "width": 128, "color": "gray", "frames": 4, "clip_length": 5,
                "fps": 10},                          # optional: the frame rate the model was trained at
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
        "min_event_frames": 5,
        "local": {"local16": {"source": "error_map", "window": 16}},  # optional derived components:
                                                           # local error of the error map (vadedge.scoring)
        "dropped": {"feature_distance": "relative spread 0.007 < 0.1 ..."},  # optional: weight-0 and why
        "paper_weights": {"psnr": 0.6, "feature_distance": 0.4},  # optional: `vadedge eval`'s paper fusion
        "mask": {"width": 360, "height": 240, "mode": "exclude", "polygons": [[[0, 0], [40, 0], [40, 20]]]}
      },
      "provenance": {"vadedge_version": "0.1.0", "opset": 17, "created": "…", ...}
    }
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, Optional, Union

import numpy as np

from .errors import VadedgeError
from .preprocess import InputSpec

SCHEMA_VERSION = 1
BUNDLE_FILE = "vadedge.json"
PRECISIONS = ("fp32", "fp16", "int8")

# Bounds on what a bundle may make the runtime allocate or parse (issue 15: a hostile vadedge.json
# must give a clear error, not an out-of-memory kill or a RecursionError).
MAX_MANIFEST_BYTES = 4 << 20  # vadedge.json size
MAX_NESTING = 32  # depth of nested objects/arrays anywhere in vadedge.json
MAX_SIDE = 8192  # input height / width
MAX_CLIP = 256  # input frames / clip_length
MAX_CLIP_BYTES = 1 << 28  # one stream's uint8 clip buffer: clip_length * H * W * C
MAX_BATCH = 1024  # static batch (streams per call)
MAX_RANK = 8  # rank of a state / parameter / side input (without the batch axis)
MAX_ELEMENTS = 1 << 26  # elements of one state / parameter / side input (256 MB of float32)
MAX_EVENT_FRAMES = 1 << 20
MAX_FPS = 1000.0
# The temporal contract (docs/runtime.md "Frame rate"): `input.fps` is the frame rate the model was
# trained at; sources are sampled to it. A bundle without it was trained on Ped2-rate footage
# (UCSD Ped2 / Ped1 are 10 fps), the only data bundles were exported from before the field existed.
DEFAULT_FPS = 10.0


class BundleError(VadedgeError):
    """A bundle folder that is missing, incomplete, or whose vadedge.json breaks the schema."""


_SHAPE = {"type": "array", "maxItems": MAX_RANK, "items": {"type": "integer", "minimum": 1, "maximum": MAX_ELEMENTS}}
_STATE_ITEM = {
    "type": "object",
    "required": ["name", "input", "output", "shape", "dtype"],
    "properties": {
        "name": {"type": "string"},
        "input": {"type": "string"},
        "output": {"type": "string"},
        "shape": _SHAPE,
        "dtype": {"type": "string", "enum": ["float32", "float16"]},
    },
}
_STATS = {
    "type": "object",
    "required": ["location", "scale"],
    "properties": {"location": {"type": "number"}, "scale": {"type": "number", "exclusiveMinimum": 0}},
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
LOCAL_SOURCES = ("error_map",)  # extra outputs a local component can be computed from

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
            "type": "object",
            "required": ["height", "width", "color", "frames", "clip_length"],
            "properties": {
                "height": {"type": "integer", "minimum": 8, "maximum": MAX_SIDE},
                "width": {"type": "integer", "minimum": 8, "maximum": MAX_SIDE},
                "color": {"type": "string", "enum": ["gray", "rgb", "bgr"]},
                "frames": {"type": "integer", "minimum": 1, "maximum": MAX_CLIP},
                "clip_length": {"type": "integer", "minimum": 1, "maximum": MAX_CLIP},
                "fps": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_FPS},
            },
        },
        "graph": {
            "type": "object",
            "required": ["batch", "frames_input", "state", "params", "scores"],
            "properties": {
                "batch": {"oneOf": [{"type": "integer", "minimum": 1, "maximum": MAX_BATCH}, {"const": "dynamic"}]},
                "frames_input": {"type": "string"},
                "state": {"type": "array", "items": _STATE_ITEM},
                "params": {"type": "array", "items": _STATE_ITEM},
                # host-computed inputs [B, *shape] (e.g. MAAM-Net's optical flow; "provider" names it)
                "side_inputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "input", "shape", "dtype"],
                        "properties": {
                            "name": {"type": "string"},
                            "input": {"type": "string"},
                            "shape": _SHAPE,
                            "dtype": {"type": "string", "enum": ["float32"]},
                            "layout": {"type": "string"},
                            "provider": {"type": "object", "properties": {"name": {"type": "string"}}},
                        },
                    },
                },
                "scores": {**_STRING_MAP, "minProperties": 1},
                "extra_outputs": _STRING_MAP,
            },
        },
        "models": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"enum": list(PRECISIONS)},
            "additionalProperties": {"type": "string"},
        },
        "engines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["file", "precision"],
                "properties": {
                    "file": {"type": "string"},
                    "precision": {"type": "string", "enum": list(PRECISIONS)},
                    "tensorrt": {"type": "string"},
                    "device": {"type": "string"},
                    "sidecar": {"type": "string"},
                    "onnx": {"type": "string"},
                    "plugins": {"type": "boolean"},
                    "version_compatible": {"type": "boolean"},
                },
            },
        },
        "state_file": {"type": "string"},
        "score": {
            "type": "object",
            "required": ["signs", "weights"],
            "properties": {
                "signs": {"type": "object", "additionalProperties": {"type": "integer", "enum": [-1, 1]}},
                "weights": {"type": "object", "additionalProperties": {"type": "number"}},
                "calibration": {"oneOf": [{"type": "null"}, {"type": "object", "additionalProperties": _STATS}]},
                "smoothing": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "threshold": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["on", "off"],
                            "properties": {
                                "on": {"type": "number"},
                                "off": {"type": "number"},
                                "policy": {"type": "string"},
                                "target": {"type": "number"},
                                "off_target": {"type": "number"},
                            },
                        },
                    ]
                },
                "min_event_frames": {"type": "integer", "minimum": 1, "maximum": MAX_EVENT_FRAMES},
                # derived components computed on the host from an extra output (docs/causal-scores.md)
                "local": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["source", "window"],
                        "properties": {
                            "source": {"type": "string", "enum": list(LOCAL_SOURCES)},
                            "window": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                        },
                    },
                },
                "mask": {
                    "type": "object",
                    "required": ["width", "height", "polygons"],  # vadedge/roi.py
                    "properties": {
                        "width": {"type": "integer", "minimum": 1, "maximum": 1 << 16},
                        "height": {"type": "integer", "minimum": 1, "maximum": 1 << 16},
                        "mode": {"type": "string", "enum": ["exclude", "include"]},
                        "polygons": {
                            "type": "array",
                            "items": {
                                "type": "array",
                                "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}},
                            },
                        },
                    },
                },
                "dropped": _STRING_MAP,  # component -> why the fusion leaves it out (weight 0)
                "paper_weights": {"type": "object", "additionalProperties": {"type": "number"}},
            },
        },
        "provenance": {
            "type": "object",
            "required": ["vadedge_version"],
            "properties": {"vadedge_version": {"type": "string"}},
        },
    },
}


# ---------------------------------------------------------------------------------------- checking
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_ok(value: Any, spec: dict) -> bool:
    t = spec.get("type")
    if t is None:
        return True
    types = t if isinstance(t, list) else [t]
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "null": lambda v: v is None,
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": _is_number,
    }
    return any(checks[x](value) for x in types)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


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
        raise BundleError(f"{where}: {value!r:.80} matches none of the allowed forms ({'; '.join(errors)})")
    if "const" in spec and (value != spec["const"] or type(value) is not type(spec["const"])):
        raise BundleError(f"{where} must be {spec['const']!r}, got {value!r:.80}")
    if not _type_ok(value, spec):
        raise BundleError(f"{where} must be of type {spec['type']}, got {_type_name(value)}")
    if "enum" in spec and value not in spec["enum"]:
        raise BundleError(f"{where} must be one of {spec['enum']}, got {value!r:.80}")
    if _is_number(value):
        if not math.isfinite(value):
            raise BundleError(f"{where} must be a finite number, got {value}")
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
    if isinstance(value, list):
        if "maxItems" in spec and len(value) > spec["maxItems"]:
            raise BundleError(f"{where} must have at most {spec['maxItems']} items, got {len(value)}")
        if "items" in spec:
            for i, item in enumerate(value):
                _validate(item, spec["items"], f"{where}[{i}]")


def _check_tree(doc: Any) -> None:
    """Free-form parts too (provenance, provider): JSON types only, string keys, finite numbers, bounded depth."""
    todo = [(doc, 1, "vadedge.json")]
    while todo:
        value, depth, where = todo.pop()
        if depth > MAX_NESTING:
            raise BundleError(f"{where} is nested more than {MAX_NESTING} levels deep")
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise BundleError(f"{where} has a non-string key {k!r:.40}")
                todo.append((v, depth + 1, f"{where}.{k}"))
        elif isinstance(value, (list, tuple)):
            todo.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise BundleError(f"{where} must be a finite number, got {value}")
        elif not (value is None or isinstance(value, (str, int, float))):
            raise BundleError(f"{where} is a {type(value).__name__}, not a JSON value")


def _relative_file(name: str, where: str) -> str:
    """A file name in vadedge.json: a relative path that stays inside the bundle folder (checked again on disk)."""
    parts = PurePosixPath(name).parts
    if (
        not name
        or "\0" in name
        or "\\" in name
        or name.startswith("/")
        or ".." in parts
        or not parts
        or parts == (".",)
        or (len(parts[0]) >= 2 and parts[0][1] == ":")
    ):
        raise BundleError(f"{where} must be a file name inside the bundle folder, got {name!r:.200}")
    return name


def _num(x: Any) -> float:
    return float(x)


# ---------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class InputSection:
    """`input`: what the graph consumes — `frames` context frames, clips of `clip_length` frames."""

    height: int
    width: int
    color: str
    frames: int
    clip_length: int
    fps: Optional[float] = None  # the frame rate the model was trained at (None: an older bundle)

    @property
    def frame_rate(self) -> float:
        """The rate sources are sampled at: `fps`, else DEFAULT_FPS (bundles that predate the field)."""
        return float(self.fps) if self.fps is not None else DEFAULT_FPS

    @property
    def spec(self) -> InputSpec:
        return InputSpec(self.height, self.width, self.color, self.frames)

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @classmethod
    def from_dict(cls, d: Mapping) -> InputSection:
        fps = d.get("fps")
        return cls(
            int(d["height"]),
            int(d["width"]),
            str(d["color"]),
            int(d["frames"]),
            int(d["clip_length"]),
            None if fps is None else _num(fps),
        )

    def to_dict(self) -> dict:
        doc: dict[str, Any] = {
            "height": self.height,
            "width": self.width,
            "color": self.color,
            "frames": self.frames,
            "clip_length": self.clip_length,
        }
        if self.fps is not None:
            doc["fps"] = self.fps
        return doc


@dataclass(frozen=True)
class TensorSpec:
    """A carried state tensor or an adapted parameter: `name` in state.npz, graph `input` / `output`."""

    name: str
    input: str
    output: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, d: Mapping) -> TensorSpec:
        return cls(
            str(d["name"]), str(d["input"]), str(d["output"]), tuple(int(x) for x in d["shape"]), str(d["dtype"])
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "input": self.input,
            "output": self.output,
            "shape": list(self.shape),
            "dtype": self.dtype,
        }


@dataclass(frozen=True)
class SideInputSpec:
    """A host-computed graph input [B, *shape] (e.g. optical flow); `provider` configures its producer."""

    name: str
    input: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    provider: Optional[Mapping[str, Any]] = None
    layout: Optional[str] = None  # what the values mean, for people reading vadedge.json

    @classmethod
    def from_dict(cls, d: Mapping) -> SideInputSpec:
        prov = d.get("provider")
        return cls(
            str(d["name"]),
            str(d["input"]),
            tuple(int(x) for x in d["shape"]),
            str(d["dtype"]),
            None if prov is None else json.loads(json.dumps(prov)),
            d.get("layout"),
        )

    def to_dict(self) -> dict:
        doc: dict[str, Any] = {"name": self.name, "input": self.input, "shape": list(self.shape), "dtype": self.dtype}
        if self.layout is not None:
            doc["layout"] = self.layout
        if self.provider is not None:
            doc["provider"] = json.loads(json.dumps(self.provider))
        return doc


@dataclass(frozen=True)
class GraphSpec:
    """`graph`: the stream-step graph's I/O contract (tensor names, batch, carried state)."""

    batch: Union[int, str]  # static batch (streams per call) or "dynamic"
    frames_input: str
    state: tuple[TensorSpec, ...] = ()
    params: tuple[TensorSpec, ...] = ()
    scores: Mapping[str, str] = field(default_factory=dict)  # component -> output tensor [B]
    extra_outputs: Mapping[str, str] = field(default_factory=dict)  # e.g. error_map
    side_inputs: tuple[SideInputSpec, ...] = ()

    @property
    def static_batch(self) -> Optional[int]:
        """The fixed batch size, None for a dynamic-batch graph."""
        return None if self.batch == "dynamic" else int(self.batch)

    @classmethod
    def from_dict(cls, d: Mapping) -> GraphSpec:
        return cls(
            batch=d["batch"],
            frames_input=str(d["frames_input"]),
            state=tuple(TensorSpec.from_dict(s) for s in d["state"]),
            params=tuple(TensorSpec.from_dict(s) for s in d["params"]),
            scores=dict(d["scores"]),
            extra_outputs=dict(d.get("extra_outputs") or {}),
            side_inputs=tuple(SideInputSpec.from_dict(s) for s in d.get("side_inputs") or ()),
        )

    def to_dict(self) -> dict:
        doc: dict[str, Any] = {
            "batch": self.batch,
            "frames_input": self.frames_input,
            "state": [s.to_dict() for s in self.state],
            "params": [p.to_dict() for p in self.params],
            "scores": dict(self.scores),
            "extra_outputs": dict(self.extra_outputs),
        }
        if self.side_inputs:
            doc["side_inputs"] = [s.to_dict() for s in self.side_inputs]
        return doc


class _FlatSection:
    """from_dict / to_dict of a flat section whose optional fields are left out of the JSON when None."""

    @classmethod
    def from_dict(cls, d: Mapping) -> Any:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})  # type: ignore[arg-type]

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class EngineSpec(_FlatSection):
    """`engines[]`: a TensorRT engine built for one GPU (`device`) and TensorRT version."""

    file: str
    precision: str
    tensorrt: Optional[str] = None
    device: Optional[str] = None
    sidecar: Optional[str] = None
    onnx: Optional[str] = None
    plugins: Optional[bool] = None
    version_compatible: Optional[bool] = None

    @classmethod
    def from_build(cls, file: str, precision: str, built: Mapping[str, Any], **extra: Any) -> EngineSpec:
        """The entry for an engine just built, from its sidecar document `built` (TensorRT version, GPU)."""
        device = built.get("device")
        return cls(
            file=file,
            precision=precision,
            tensorrt=built.get("tensorrt"),
            device=device.get("name") if isinstance(device, Mapping) else device,
            version_compatible=True if built.get("version_compatible") else None,
            **extra,
        )


@dataclass(frozen=True)
class Stats:
    """Calibration of one score component on normal footage: z = (x − location) / scale."""

    location: float
    scale: float


@dataclass(frozen=True)
class ThresholdSpec(_FlatSection):
    """Hysteresis threshold on the smoothed fused score and the policy that chose it."""

    on: float
    off: float
    policy: Optional[str] = None
    target: Optional[float] = None
    off_target: Optional[float] = None


@dataclass(frozen=True)
class LocalSpec:
    """`score.local.<name>`: a derived component, the local error of an extra output (vadedge.scoring.
    local_components): mean over `window`×`window` model-input pixels, max over the frame, in dB."""

    source: str
    window: int


@dataclass(frozen=True)
class MaskSpec:
    """`score.mask`: ROI / privacy polygons in the pixels of a `width` × `height` camera frame, applied
    to the error map before the local components (vadedge/roi.py). `mode`: "exclude" or "include"."""

    width: int
    height: int
    polygons: tuple[tuple[tuple[float, float], ...], ...]
    mode: str = "exclude"

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "polygons": [[[x, y] for x, y in poly] for poly in self.polygons],
        }


@dataclass(frozen=True)
class ScoreSpec:
    """`score`: how components become a decision (signs, weights, calibration, EMA, threshold).

    Components are the graph's `scores` plus the derived `local` ones. `dropped` names components the
    causal fusion leaves out (weight 0) and why; `paper_weights` is the family's paper fusion for the
    offline paper protocol of `vadedge eval` (default: `weights`).
    """

    signs: Mapping[str, int]
    weights: Mapping[str, float]
    calibration: Optional[Mapping[str, Stats]] = None
    smoothing: float = 1.0
    threshold: Optional[ThresholdSpec] = None
    min_event_frames: int = 1
    local: Mapping[str, LocalSpec] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)
    paper_weights: Optional[Mapping[str, float]] = None
    mask: Optional[MaskSpec] = None

    @property
    def offline_weights(self) -> Mapping[str, float]:
        """The weights of the offline paper protocol: `paper_weights`, else the causal `weights`."""
        return self.paper_weights if self.paper_weights is not None else self.weights

    @classmethod
    def from_dict(cls, d: Mapping) -> ScoreSpec:
        cal = d.get("calibration")
        th = d.get("threshold")
        pw = d.get("paper_weights")
        return cls(
            signs={k: int(v) for k, v in d["signs"].items()},
            weights={k: _num(v) for k, v in d["weights"].items()},
            calibration=None
            if cal is None
            else {k: Stats(_num(v["location"]), _num(v["scale"])) for k, v in cal.items()},
            smoothing=_num(d.get("smoothing", 1.0)),
            threshold=None if th is None else ThresholdSpec.from_dict(th),
            min_event_frames=int(d.get("min_event_frames", 1)),
            local={k: LocalSpec(str(v["source"]), int(v["window"])) for k, v in (d.get("local") or {}).items()},
            dropped={k: str(v) for k, v in (d.get("dropped") or {}).items()},
            paper_weights=None if pw is None else {k: _num(v) for k, v in pw.items()},
            mask=None
            if d.get("mask") is None
            else MaskSpec(
                int(d["mask"]["width"]),
                int(d["mask"]["height"]),
                tuple(tuple((_num(x), _num(y)) for x, y in poly) for poly in d["mask"]["polygons"]),
                str(d["mask"].get("mode", "exclude")),
            ),
        )

    def to_dict(self) -> dict:
        doc: dict[str, Any] = {
            "signs": dict(self.signs),
            "weights": dict(self.weights),
            "calibration": None
            if self.calibration is None
            else {k: {"location": s.location, "scale": s.scale} for k, s in self.calibration.items()},
            "smoothing": self.smoothing,
            "threshold": None if self.threshold is None else self.threshold.to_dict(),
            "min_event_frames": self.min_event_frames,
        }
        if self.local:  # optional sections are left out when empty: older bundles read back unchanged
            doc["local"] = {k: {"source": v.source, "window": v.window} for k, v in self.local.items()}
        if self.dropped:
            doc["dropped"] = dict(self.dropped)
        if self.paper_weights is not None:
            doc["paper_weights"] = dict(self.paper_weights)
        if self.mask is not None:
            doc["mask"] = self.mask.to_dict()
        return doc


@dataclass(frozen=True)
class Manifest:
    """vadedge.json, typed. Build with `from_dict` (validates) or the constructor + `validated()`."""

    family: str
    input: InputSection
    graph: GraphSpec
    models: Mapping[str, str]  # precision -> model file name
    score: ScoreSpec
    provenance: Mapping[str, Any]  # free-form: versions, checkpoint, calibration summary
    state_file: str = "state.npz"
    preset: Optional[str] = None
    precision: Optional[str] = None  # the model the bundle was exported to run
    engines: tuple[EngineSpec, ...] = ()
    schema_version: int = SCHEMA_VERSION

    @property
    def default_precision(self) -> str:
        """The precision the bundle runs by default (`precision`), else fp32, else its only model."""
        if self.precision is not None:
            return self.precision
        return "fp32" if "fp32" in self.models else next(iter(self.models))

    @classmethod
    def from_dict(cls, doc: Any) -> Manifest:
        """Validate a vadedge.json document and return it typed; BundleError names the first problem."""
        if isinstance(doc, dict) and "schema_version" in doc:
            version = doc["schema_version"]
            if not isinstance(version, int) or isinstance(version, bool):
                raise BundleError(
                    f"vadedge.json: schema_version must be an integer (e.g. {SCHEMA_VERSION}), "
                    f"got {version!r:.40} ({_type_name(version)})"
                )
            if version != SCHEMA_VERSION:
                raise BundleError(
                    f"vadedge.json has schema_version {version}; this vadedge reads version "
                    f"{SCHEMA_VERSION} (upgrade vadedge or re-export the bundle)"
                )
        _check_tree(doc)
        _validate(doc, BUNDLE_JSON_SCHEMA, "vadedge.json")
        m = cls(
            family=doc["family"],
            input=InputSection.from_dict(doc["input"]),
            graph=GraphSpec.from_dict(doc["graph"]),
            models=dict(doc["models"]),
            score=ScoreSpec.from_dict(doc["score"]),
            provenance=json.loads(json.dumps(doc["provenance"])),
            state_file=doc["state_file"],
            preset=doc.get("preset"),
            precision=doc.get("precision"),
            engines=tuple(EngineSpec.from_dict(e) for e in doc.get("engines") or ()),
            schema_version=doc["schema_version"],
        )
        m._check()
        return m

    def to_dict(self) -> dict:
        """The JSON document (a fresh dict: mutating it does not touch the manifest)."""
        doc: dict[str, Any] = {"schema_version": self.schema_version, "family": self.family, "preset": self.preset}
        if self.precision is not None:
            doc["precision"] = self.precision
        doc.update(
            input=self.input.to_dict(),
            graph=self.graph.to_dict(),
            models=dict(self.models),
            engines=[e.to_dict() for e in self.engines],
            state_file=self.state_file,
            score=self.score.to_dict(),
            provenance=json.loads(json.dumps(self.provenance)),
        )
        return doc

    def validated(self) -> Manifest:
        """Re-check a manifest built in code (the exporter): the same rules as a loaded one."""
        return Manifest.from_dict(self.to_dict())

    def files(self) -> list[tuple[str, str]]:
        """(what, file name) of every file vadedge.json names: models, state file, engines and sidecars."""
        out = [(f"{p} model", f) for p, f in self.models.items()]
        out.append(("state file", self.state_file))
        for e in self.engines:
            out.append(("engine", e.file))
            out += [(f"engine {what}", getattr(e, what)) for what in ("sidecar", "onnx") if getattr(e, what)]
        return out

    def _check(self) -> None:
        """The rules a JSON Schema cannot say: components agree, sizes bounded, files inside the folder."""
        sc = self.score
        comps = set(self.graph.scores) | set(sc.local)
        for name, loc in sc.local.items():
            if name in self.graph.scores:
                raise BundleError(f"vadedge.json: score.local.{name} has the name of a graph output score")
            if loc.source not in self.graph.extra_outputs:
                raise BundleError(
                    f"vadedge.json: score.local.{name} is computed from '{loc.source}', which "
                    f"the graph does not output (graph.extra_outputs: "
                    f"{sorted(self.graph.extra_outputs)})"
                )
            if loc.window > min(self.input.height, self.input.width):
                raise BundleError(
                    f"vadedge.json: score.local.{name} window {loc.window} px exceeds the "
                    f"{self.input.height}x{self.input.width} input"
                )
        for key in ("dropped", "paper_weights"):
            if unknown := sorted(set(getattr(sc, key) or ()) - comps):
                raise BundleError(
                    f"vadedge.json: score.{key} names {unknown}, which are not score components {sorted(comps)}"
                )
        if sc.mask is not None:
            if not sc.local:
                raise BundleError("vadedge.json: score.mask applies to local components, and score.local declares none")
            from .errors import ConfigError
            from .roi import check_mask

            try:
                check_mask(sc.mask, "vadedge.json: score.mask")
            except ConfigError as exc:
                raise BundleError(str(exc)) from exc
        if heavy := sorted(c for c in sc.dropped if sc.weights.get(c)):
            raise BundleError(f"vadedge.json: score.dropped components {heavy} must have weight 0")
        for key in ("signs", "weights"):
            if set(getattr(sc, key)) != comps:
                raise BundleError(
                    f"vadedge.json: score.{key} names {sorted(getattr(sc, key))} but the graph "
                    f"outputs scores {sorted(comps)}"
                )
        if sc.calibration is not None and set(sc.calibration) != comps:
            raise BundleError(
                f"vadedge.json: score.calibration covers {sorted(sc.calibration)}, expected {sorted(comps)}"
            )
        if sc.threshold is not None and sc.threshold.off > sc.threshold.on:
            raise BundleError(
                f"vadedge.json: score.threshold.off ({sc.threshold.off}) must not exceed on ({sc.threshold.on})"
            )
        if self.precision is not None and self.precision not in self.models:
            raise BundleError(
                f"vadedge.json: precision is {self.precision!r} but models has only {sorted(self.models)}"
            )
        inp = self.input
        if inp.height % 8 or inp.width % 8:
            raise BundleError(f"vadedge.json: input size must be multiples of 8, got {inp.height}x{inp.width}")
        clip_bytes = inp.clip_length * inp.height * inp.width * inp.channels
        if clip_bytes > MAX_CLIP_BYTES:
            raise BundleError(
                f"vadedge.json: a clip of {inp.clip_length} x {inp.height}x{inp.width}x"
                f"{inp.channels} is {clip_bytes / 2**20:.0f} MiB per stream; the limit is "
                f"{MAX_CLIP_BYTES >> 20} MiB"
            )
        items = list(self.graph.state) + list(self.graph.params) + list(self.graph.side_inputs)
        for item in items:
            if math.prod(item.shape) > MAX_ELEMENTS:
                raise BundleError(
                    f"vadedge.json: '{item.name}' has shape {list(item.shape)}, more than {MAX_ELEMENTS} elements"
                )
        names = [i.name for i in list(self.graph.state) + list(self.graph.params)]
        if len(set(names)) != len(names):
            raise BundleError(f"vadedge.json: graph state/params names repeat: {names}")
        for what, name in self.files():
            _relative_file(name, f"vadedge.json: {what}")


def validate_manifest(doc: Any) -> Manifest:
    """Raise BundleError naming the first problem in a vadedge.json document; return it typed."""
    return Manifest.from_dict(doc)


# ---------------------------------------------------------------------------------------- graph I/O
# graph I/O types as ONNX Runtime names them
_ORT_TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)", "float16": "tensor(float16)"}


def expected_io(manifest: Manifest) -> tuple[dict[str, tuple[str, list]], list[str]]:
    """({input name: (ort type, shape with 'B' for the batch)}, [required output names]) of a manifest
    (adapted parameters without the batch axis: graphs may also take them per stream)."""
    inp, g = manifest.input, manifest.graph
    inputs = {g.frames_input: ("uint8", ["B", inp.clip_length, inp.height, inp.width, inp.channels])}
    for item in list(g.state) + list(g.side_inputs):
        inputs[item.input] = (item.dtype, ["B", *item.shape])
    for p in g.params:
        inputs[p.input] = (p.dtype, list(p.shape))
    outputs = list(g.scores.values()) + [s.output for s in g.state] + list(g.extra_outputs.values())
    return inputs, outputs


def check_graph_io(name: str, inputs: Sequence, outputs: Sequence[str], manifest: Manifest) -> None:
    """Raise BundleError if a graph's I/O (ONNX Runtime NodeArg-like `inputs`: .name/.type/.shape, and
    output names) differs from what `manifest` describes.

    The one model-vs-manifest check: `vadedge info` runs it on every model file, the ONNX Runtime
    backend on the session it runs, so `run`, `demo` and the SDK reject a mismatched bundle on
    load with the same message instead of failing at the first inference. A static `batch` must
    be exactly what the graph declares (a number over a dynamic-batch graph is refused).
    """
    want_in, want_out = expected_io(manifest)
    have_in = {i.name: i for i in inputs}
    batch = manifest.graph.batch
    if set(have_in) != set(want_in):
        raise BundleError(f"{name}: graph inputs are {sorted(have_in)} but vadedge.json describes {sorted(want_in)}")
    for p in manifest.graph.params:  # adapted parameters: shared [*shape] or per stream [B, *shape]
        if len(have_in[p.input].shape) == len(p.shape) + 1:
            want_in[p.input] = (p.dtype, ["B", *p.shape])
    for iname, (dtype, shape) in want_in.items():
        got = have_in[iname]
        if got.type != _ORT_TYPES[dtype]:
            raise BundleError(f"{name}: input '{iname}' is {got.type}, vadedge.json says {dtype}")
        if len(got.shape) != len(shape):
            raise BundleError(f"{name}: input '{iname}' has rank {len(got.shape)}, vadedge.json says {len(shape)}")
        for g_dim, w_dim in zip(got.shape, shape):
            if w_dim == "B":
                if batch == "dynamic":
                    if isinstance(g_dim, int):
                        raise BundleError(
                            f"{name}: input '{iname}' has a fixed batch {g_dim}, vadedge.json says dynamic"
                        )
                elif g_dim != batch:
                    declared = g_dim if isinstance(g_dim, int) else "dynamic"
                    raise BundleError(
                        f"{name}: input '{iname}' has batch {declared}, vadedge.json says {batch} "
                        f"(graph.batch must be what the graph declares)"
                    )
            elif g_dim != w_dim:
                raise BundleError(
                    f"{name}: input '{iname}' has shape {got.shape}, vadedge.json says "
                    f"{[batch if d == 'B' else d for d in shape]}"
                )
    have_out = set(outputs)
    missing = [o for o in want_out if o not in have_out]
    if missing:
        raise BundleError(
            f"{name}: vadedge.json names outputs {missing} that the graph does not have (it has {sorted(have_out)})"
        )


# ---------------------------------------------------------------------------------------- files
def _confined(root: Path, name: str, what: str) -> Path:
    """`root / name`, after resolving symlinks, must lie inside `root` (an existing file or not)."""
    _relative_file(name, f"vadedge.json: {what}")
    base = root.resolve()
    target = (root / name).resolve()
    if target != base and base not in target.parents:
        raise BundleError(f"bundle {root}: {what} {name!r} resolves outside the bundle folder")
    return target


def read_manifest(path: Path) -> Manifest:
    """Parse and validate `path` (a vadedge.json): size-bounded, NaN/Infinity and deep nesting refused."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path} is {size} bytes; a vadedge.json is at most {MAX_MANIFEST_BYTES} bytes")
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON (not UTF-8): {exc}") from exc

    def no_constant(name: str) -> Any:
        raise BundleError(f"{path} contains {name}: vadedge.json numbers must be finite")

    def finite(text_value: str) -> float:
        value = float(text_value)
        if not math.isfinite(value):
            raise BundleError(f"{path} contains the number {text_value[:40]}, which overflows to {value}")
        return value

    try:
        doc = json.loads(text, parse_constant=no_constant, parse_float=finite)
    except RecursionError as exc:
        raise BundleError(f"{path} is nested too deeply to be a vadedge.json") from exc
    except ValueError as exc:  # JSONDecodeError, and int() of a number with too many digits
        raise BundleError(f"{path} is not valid JSON: {exc}") from exc
    return Manifest.from_dict(doc)


def _state_dtype(item: TensorSpec) -> np.dtype:
    return np.dtype(item.dtype)


def read_state(path: Path, items: list[TensorSpec], where: str) -> dict[str, np.ndarray]:
    """The arrays `items` name from a .npz, shape- and dtype-checked from each header before reading it.

    A truncated or corrupt archive, a missing array, a wrong shape or a non-float dtype gives a
    BundleError; an array never costs more memory than vadedge.json declares.
    """
    state: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = set(zf.namelist())
            for item in items:
                member = item.name + ".npy"
                if member not in members:
                    raise BundleError(f"{where} has no '{item.name}'")
                with zf.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise BundleError(f"{where}: '{item.name}' has an unsupported .npy version {version}")
                    if list(shape) != list(item.shape):
                        raise BundleError(
                            f"{where}: '{item.name}' has shape {list(shape)}, vadedge.json says {list(item.shape)}"
                        )
                    if dtype.kind != "f" or dtype.itemsize > 8:
                        raise BundleError(
                            f"{where}: '{item.name}' has dtype {dtype}, vadedge.json says "
                            f"{item.dtype} (state arrays are floating point)"
                        )
                    count = math.prod(shape)
                    data = f.read(count * dtype.itemsize)
                    if len(data) != count * dtype.itemsize:
                        raise BundleError(f"{where}: '{item.name}' is truncated")
                    arr = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
                    state[item.name] = np.ascontiguousarray(arr, dtype=_state_dtype(item))
    except BundleError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise BundleError(f"{where} cannot be read (corrupt or truncated): {exc}") from exc
    return state


@dataclass
class Bundle:
    """A loaded bundle: the validated manifest, its folder and the initial per-stream state."""

    path: Path
    manifest: Manifest
    state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def input_spec(self) -> InputSpec:
        return self.manifest.input.spec

    @property
    def clip_length(self) -> int:
        return self.manifest.input.clip_length

    @property
    def precision(self) -> str:
        """The precision the bundle was exported to run (`precision`), else fp32, else its only model."""
        return self.manifest.default_precision

    def file(self, name: str, what: str = "file") -> Path:
        """The path of a file vadedge.json names; BundleError if it would lie outside the bundle folder."""
        return _confined(self.path, name, what)

    def model_file(self, precision: str = "fp32") -> Path:
        models = self.manifest.models
        if precision not in models:
            raise BundleError(f"bundle {self.path} has no {precision} model (has: {', '.join(models)})")
        return self.file(models[precision], f"{precision} model")


def save_bundle(path: Union[str, Path], manifest: Union[Manifest, Mapping], state: Mapping[str, np.ndarray]) -> Path:
    """Validate and write vadedge.json + the state file into `path` (model files are written by the exporter)."""
    path = Path(path)
    m = manifest.validated() if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)
    path.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in state.items()}
    np.savez(_confined(path, m.state_file, "state file"), **arrays)
    tmp = path / (BUNDLE_FILE + ".tmp")
    tmp.write_text(json.dumps(m.to_dict(), indent=1, allow_nan=False))
    os.replace(tmp, path / BUNDLE_FILE)
    return path


def load_bundle(path: Union[str, Path], check_files: bool = True) -> Bundle:
    """Read and validate a bundle folder; BundleError names what is missing or wrong.

    Every file vadedge.json names must resolve inside the folder (checked before any file is
    touched, so a bundle cannot probe or read paths elsewhere); check_files=False skips only the
    existence check of the model files.
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle {path} does not exist or is not a folder")
    mpath = path / BUNDLE_FILE
    if not mpath.is_file():
        raise BundleError(f"{path} is not a vadedge bundle (no {BUNDLE_FILE})")
    manifest = read_manifest(_confined(path, BUNDLE_FILE, BUNDLE_FILE))
    files = {name: _confined(path, name, what) for what, name in manifest.files()}
    if check_files:
        for precision, fname in manifest.models.items():
            if not files[fname].is_file():
                raise BundleError(f"bundle {path}: {precision} model file {fname} is missing")
    state: dict[str, np.ndarray] = {}
    items = list(manifest.graph.state) + list(manifest.graph.params)
    if items:
        spath = files[manifest.state_file]
        if not spath.is_file():
            raise BundleError(f"bundle {path}: state file {manifest.state_file} is missing")
        state = read_state(spath, items, f"bundle {path}: {manifest.state_file}")
    return Bundle(path, manifest, state)
