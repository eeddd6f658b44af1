"""The run configuration of `vadedge run`: cameras, sinks, metrics address and state folder.

One model, `RunConfig`, describes what a run does, whether it comes from a YAML file
(`vadedge run --config cameras.yaml`, `load_config`) or from the single-camera command-line
options (`from_cli_options`), so every option of `vadedge run SOURCE` can be written in the file
and `--print-config` shows either as YAML. Validation (pydantic v2, imported only here) rejects
unknown keys, wrong types, duplicate camera names, masks with points outside their frame, unknown
sink settings and output folders that cannot be written; each `ConfigError` names the key and, for
a file, its line (from the YAML node marks). Relative paths in a file are taken from the file's
folder and printed resolved.

    cameras:
      - name: gate
        source: rtsp://10.0.0.5/stream
        bundle: bundles/ped2
        sample_fps: 10
        mask: {width: 640, height: 480, polygons: [[[0, 0], [640, 0], [640, 40], [0, 40]]]}
    sinks:
      - {kind: jsonl, path: events.jsonl}
      - {kind: webhook, url: http://127.0.0.1:8000/vadedge}
    metrics: 127.0.0.1:9108
    state_dir: /var/lib/vadedge
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

from ._optional import require
from .errors import ConfigError

require("pydantic")
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator  # noqa: E402

Loc = tuple[Union[str, int], ...]
PATH_FIELDS = ("bundle", "engine", "events", "scores", "save_video")  # camera keys that are file paths


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CameraConfig(_Strict):
    """One camera: what `vadedge run SOURCE` takes for its one source, per camera."""

    name: str = "default"
    source: str
    enabled: bool = True
    bundle: Optional[str] = None  # --model: bundle folder (None: the model shipped with vadedge)
    server: Optional[str] = None  # --server grpc://HOST:PORT (bundle then names the Triton model)
    backend: Literal["auto", "onnxruntime", "tensorrt", "torch"] = "auto"
    device: str = "auto"
    precision: Optional[Literal["fp32", "fp16", "int8"]] = None
    engine: Optional[str] = None
    plugins: list[str] = Field(default_factory=list)
    threads: Optional[int] = Field(default=None, ge=1)
    threshold: Optional[Union[float, tuple[float, float]]] = None  # ON or [ON, OFF]
    smoothing: Optional[float] = Field(default=None, gt=0, le=1)
    min_event_frames: Optional[int] = Field(default=None, ge=1)
    fps: Optional[float] = Field(default=None, gt=0)
    sample_fps: Optional[float] = Field(default=None, gt=0)
    all_frames: bool = False
    adapt_k: Optional[int] = Field(default=None, ge=1)
    heatmap: bool = True
    mask: Optional[Union[str, dict[str, Any]]] = None  # a mask JSON file or the mask inline (vadedge.roi)
    max_reconnects: int = Field(default=10, ge=0)
    source_lost_after: float = Field(default=5.0, ge=0)
    max_frames: Optional[int] = Field(default=None, ge=1)
    events: Optional[str] = None  # the per-run event log of `--events`
    scores: Optional[str] = None
    save_video: Optional[str] = None
    show: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        from .delivery.feed import check_camera_name

        try:
            return check_camera_name(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: Any) -> Any:
        if v is None:
            return v
        vals = (v, v) if isinstance(v, (int, float)) else tuple(v)
        if not all(math.isfinite(x) for x in vals):
            raise ValueError(f"thresholds must be finite numbers, got {v!r}")
        if vals[1] > vals[0]:
            raise ValueError(f"expected ON or [ON, OFF] with OFF <= ON, got {list(vals)}")
        return v

    @field_validator("smoothing", "fps", "sample_fps", "source_lost_after")
    @classmethod
    def _finite(cls, v: Optional[float]) -> Optional[float]:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {v}")
        return v

    @property
    def live(self) -> bool:
        """A camera or a network stream: one that is down at start-up is waited for."""
        from .runtime.sources import URL_SCHEMES, parse_camera

        return self.source.lower().startswith(URL_SCHEMES) or parse_camera(self.source) is not None

    def thresholds(self) -> Optional[tuple[float, float]]:
        t = self.threshold
        if t is None:
            return None
        return (float(t), float(t)) if isinstance(t, (int, float)) else (float(t[0]), float(t[1]))

    def mask_spec(self) -> Any:
        """The camera's `vadedge.bundle.MaskSpec` (None without a mask)."""
        from .roi import mask_from_dict, read_mask

        if self.mask is None:
            return None
        if isinstance(self.mask, str):
            return read_mask(self.mask)
        return mask_from_dict(self.mask, f"camera {self.name!r} mask")


class SinkConfig(BaseModel):
    """A sink by its registry name (`vadedge.delivery.sink_kinds()`) with that sink's settings."""

    model_config = ConfigDict(extra="allow")
    kind: str

    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RunConfig(_Strict):
    """Everything one `vadedge run` process does; see the module doc."""

    cameras: list[CameraConfig] = Field(min_length=1)
    sinks: list[SinkConfig] = Field(default_factory=list)
    metrics: Optional[str] = None  # [HOST:]PORT of the Prometheus /metrics and /healthz endpoint
    state_dir: str = "vadedge-state"
    snapshots: Optional[str] = None  # folder for event snapshots (JPEG of the peak frame)
    clips: Optional[str] = None  # folder for event clips (MP4 with pre- and post-roll)
    pre_roll: float = Field(default=5.0, ge=0, allow_inf_nan=False)  # seconds before an event's start
    post_roll: float = Field(default=5.0, ge=0, allow_inf_nan=False)  # seconds after its end

    @property
    def enabled(self) -> list[CameraConfig]:
        return [c for c in self.cameras if c.enabled]

    def to_yaml(self) -> str:
        yaml = require("yaml")
        doc = self.model_dump(mode="json")
        doc["sinks"] = [{"kind": s.kind, **s.settings()} for s in self.sinks]
        return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------------------- loading
def load_config(path: Union[str, Path]) -> RunConfig:
    """Read and validate a YAML run config; ConfigError names the key and its line."""
    yaml = require("yaml")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {p}: cannot be read ({exc.strerror or exc})") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicate_keys(root, p)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p}: not valid YAML ({exc})") from exc
    if not isinstance(doc, Mapping):
        raise ConfigError(f"config file {p}: expected a mapping with 'cameras', got {type(doc).__name__}")
    return validate(doc, base=p.parent, where=str(p), node=root)


def from_cli_options(**opts: Any) -> RunConfig:
    """The config of a single-camera `vadedge run SOURCE [options]` (the CLI's option names)."""
    from .delivery import MqttSettings

    camera = {
        k: v
        for k, v in dict(
            name=opts["camera_name"],
            source=opts["source"],
            bundle=opts.get("model"),
            server=opts.get("server"),
            backend=opts["backend"],
            device=opts["device"],
            precision=opts.get("precision"),
            engine=opts.get("engine"),
            plugins=[str(p) for p in opts.get("plugins", ())],
            threads=opts.get("threads"),
            threshold=opts.get("threshold"),
            smoothing=opts.get("smoothing"),
            min_event_frames=opts.get("min_event_frames"),
            fps=opts.get("fps"),
            sample_fps=opts.get("sample_fps"),
            all_frames=opts["all_frames"],
            adapt_k=opts.get("adapt_k"),
            heatmap=not opts["no_heatmap"],
            mask=opts.get("mask_file"),
            max_reconnects=opts["max_reconnects"],
            source_lost_after=opts["source_lost_after"],
            max_frames=opts.get("max_frames"),
            events=opts.get("events"),
            scores=opts.get("scores"),
            save_video=opts.get("save_video"),
            show=opts["show"],
        ).items()
        if v is not None
    }
    for k in ("bundle", "engine", "mask", "events", "scores", "save_video"):
        if k in camera:
            camera[k] = str(camera[k])
    sinks: list[dict[str, Any]] = [{"kind": "webhook", "url": u} for u in opts.get("webhooks", ())]
    if opts.get("mqtt") is not None:
        import dataclasses

        sinks.append({"kind": "mqtt", **dataclasses.asdict(MqttSettings.parse(opts["mqtt"]))})
    doc = {"cameras": [camera], "sinks": sinks, "state_dir": str(opts["state_dir"])}
    for key in ("metrics", "snapshots", "clips"):
        if opts.get(key) is not None:
            doc[key] = str(opts[key])
    for key in ("pre_roll", "post_roll"):
        if opts.get(key) is not None:
            doc[key] = opts[key]
    return validate(doc, base=Path.cwd(), where="command line")


def validate(doc: Mapping[str, Any], *, base: Optional[Path], where: str, node: Any = None) -> RunConfig:
    """`doc` as a RunConfig plus the checks pydantic cannot make alone; paths resolved against `base`."""
    try:
        cfg = RunConfig.model_validate(dict(doc))
    except ValidationError as exc:
        err = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise _error(where, node, tuple(err["loc"]), _message(err) + more) from None
    if base is not None:
        _resolve_paths(cfg, base)
    _check(cfg, where, node)
    return cfg


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _resolve_paths(cfg: RunConfig, base: Path) -> None:
    def res(v: Optional[str]) -> Optional[str]:
        return v if v is None or Path(v).is_absolute() else str((base / v).resolve())

    for cam in cfg.cameras:
        for key in PATH_FIELDS:
            if not (key == "bundle" and cam.server is not None):  # with a server, bundle names its model
                setattr(cam, key, res(getattr(cam, key)))
        cam.plugins = [str(res(p)) for p in cam.plugins]
        if isinstance(cam.mask, str):
            cam.mask = res(cam.mask)
        if not cam.live:
            cam.source = str(res(cam.source))
    cfg.state_dir = str(res(cfg.state_dir))
    cfg.snapshots = res(cfg.snapshots)
    cfg.clips = res(cfg.clips)
    for s in cfg.sinks:
        path = (s.model_extra or {}).get("path")
        if s.kind == "jsonl" and isinstance(path, str):
            setattr(s, "path", res(path))  # noqa: B010 - an extra field


def _check(cfg: RunConfig, where: str, node: Any) -> None:
    from .delivery.base import parse_settings
    from .delivery.metrics import parse_address

    seen: dict[str, int] = {}
    for i, cam in enumerate(cfg.cameras):
        if cam.name in seen:
            raise _error(
                where,
                node,
                ("cameras", i, "name"),
                f"camera name {cam.name!r} is used twice (also cameras[{seen[cam.name]}])",
            )
        seen[cam.name] = i
        if cam.all_frames and cam.sample_fps is not None:
            raise _error(where, node, ("cameras", i, "all_frames"), "sample_fps and all_frames exclude each other")
        if cam.server is not None and cam.scores is not None:
            raise _error(where, node, ("cameras", i, "scores"), "scores are not available with server yet")
        try:
            cam.mask_spec()
        except ConfigError as exc:
            raise _error(where, node, ("cameras", i, "mask"), str(exc)) from None
        for key in ("events", "scores", "save_video"):
            _check_writable(getattr(cam, key), where, node, ("cameras", i, key))
    enabled = cfg.enabled
    if not enabled:
        raise _error(where, node, ("cameras",), "no camera is enabled")
    if len(enabled) > 1:
        for i, cam in enumerate(cfg.cameras):
            for key in ("save_video", "show"):
                if cam.enabled and getattr(cam, key):
                    raise _error(where, node, ("cameras", i, key), f"{key} is only available with one camera")
    for i, s in enumerate(cfg.sinks):
        try:
            settings = parse_settings(s.kind, s.settings())
        except ConfigError as exc:
            raise _error(where, node, ("sinks", i), str(exc)) from None
        if s.kind == "jsonl":
            _check_writable(settings.path, where, node, ("sinks", i, "path"))
    if cfg.metrics is not None:
        try:
            parse_address(cfg.metrics)
        except ConfigError as exc:
            raise _error(where, node, ("metrics",), str(exc)) from None
    _check_writable(str(Path(cfg.state_dir) / "x"), where, node, ("state_dir",))
    for key in ("snapshots", "clips"):
        if getattr(cfg, key) is not None:
            _check_writable(str(Path(getattr(cfg, key)) / "x"), where, node, (key,))


def _check_writable(path: Optional[str], where: str, node: Any, loc: Loc) -> None:
    """The nearest existing folder above `path` must be a writable folder (outputs are created there)."""
    if path is None:
        return
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise _error(where, node, loc, f"cannot write {path}: folder {folder} is not writable")


# ---------------------------------------------------------------------------- locations
def _error(where: str, node: Any, loc: Loc, message: str) -> ConfigError:
    key = _format_loc(loc)
    line = _line(node, loc)
    at = f"{where}, line {line}" if line is not None else where
    return ConfigError(f"{at}: {key}: {message}")


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("float", "int", "str", "bool", "tuple[float, float]", "dict[str,any]") or "[" in str(part):
            continue  # pydantic's union-member tags, not keys
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line(node: Any, loc: Loc) -> Optional[int]:
    """1-based line of the deepest YAML node along `loc` (a key's own line when the key exists)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(part, int) and type(node).__name__ == "SequenceNode" and part < len(node.value):
            child = node.value[part]
        elif isinstance(part, str) and type(node).__name__ == "MappingNode":
            for k, v in node.value:
                if getattr(k, "value", None) == part:
                    line = k.start_mark.line + 1
                    child = v
                    break
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1 if type(node).__name__ != "ScalarNode" else line
    return line


def _check_duplicate_keys(node: Any, path: Path) -> None:
    """YAML lets a later key silently replace an earlier one; a config typo should not pass so."""
    if node is None:
        return
    kind = type(node).__name__
    if kind == "MappingNode":
        seen: set = set()
        for k, v in node.value:
            if k.value in seen:
                raise ConfigError(f"config file {path}, line {k.start_mark.line + 1}: key {k.value!r} appears twice")
            seen.add(k.value)
            _check_duplicate_keys(v, path)
    elif kind == "SequenceNode":
        for v in node.value:
            _check_duplicate_keys(v, path)


def sink_specs(cfg: RunConfig) -> Sequence[tuple[str, dict[str, Any]]]:
    return [(s.kind, s.settings()) for s in cfg.sinks]


__all__ = ["CameraConfig", "RunConfig", "SinkConfig", "from_cli_options", "load_config", "sink_specs", "validate"]
