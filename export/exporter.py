"""`export_bundle`: checkpoint → bundle folder (ONNX FP32 [+ FP16 / INT8] [+ TensorRT engine], state, vadedge.json).

Steps: load the checkpoint → export the FP32 stream-step graph → convert (FP16 pass / INT8 Q/DQ
calibrated on normal footage) → optionally build a TensorRT engine (with plugins) → calibrate the
score components and threshold on normal footage with the graph that will run → write vadedge.json
(validated) → check every model file against the manifest. The bundle is assembled in a temporary
folder beside `out` and moved into place at the end, so a crash never leaves a half-written bundle.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from vadedge._optional import require
from vadedge._version import __version__
from vadedge.bundle import (
    BUNDLE_FILE,
    PRECISIONS,
    EngineSpec,
    GraphSpec,
    InputSection,
    Manifest,
    ScoreSpec,
    Stats,
    ThresholdSpec,
    save_bundle,
)
from vadedge.errors import ConfigError
from vadedge.progress import Progress
from vadedge.runtime.sampling import trained_fps
from vadedge.scoring import DEFAULT_MIN_EVENT_FRAMES, DEFAULT_SMOOTHING, DEFAULT_TARGET

logger = logging.getLogger(__name__)

ENGINES = ("onnx", "trt")
# what each engine can run from a vadedge bundle (TensorRT: FP16 graph / Q/DQ graph, strongly typed)
ENGINE_PRECISIONS = {"onnx": PRECISIONS, "trt": PRECISIONS}
MODEL_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}


def check_options(precision: str, engine: str, calib_data, plugins: bool) -> None:
    """Reject impossible option combinations before any slow work (ConfigError / DataError)."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision not in ENGINE_PRECISIONS[engine]:
        raise ConfigError(
            f"the {engine} engine cannot run {precision} (it can do: {', '.join(ENGINE_PRECISIONS[engine])})"
        )
    if precision == "int8" and calib_data is None:
        raise ConfigError(
            "INT8 needs calibration data: pass --calib-data DIR with normal footage "
            "(a dataset root with training/, or a folder of normal videos)"
        )
    if plugins and engine != "trt":
        raise ConfigError(
            "--plugins swaps the memory nodes for TensorRT plugins; it needs --engine trt "
            "(ONNX Runtime runs the standard-op functions instead)"
        )


def _trt_module(name: str):
    try:
        return importlib.import_module(f"vadedge.export.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vadedge.export"):
            raise ConfigError(
                f"this vadedge has no vadedge.export.{name} module; TensorRT export is unavailable"
            ) from exc
        raise


def _check_checkpoint_dir(path: Path) -> None:
    """The cheap part of `read_config`'s checks, before torch is imported (CheckpointError)."""
    from vadedge.errors import CheckpointError

    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model directory")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not a vadedge checkpoint (no config.json)")


def _prepare_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        if any(out.iterdir()) and not (out / BUNDLE_FILE).is_file():
            raise ConfigError(
                f"--out {out} is a non-empty folder that is not a vadedge bundle; "
                f"choose another path (a bundle there would be replaced)"
            )


def _default_score_data(cfg: dict) -> Optional[Path]:
    root = (cfg.get("data") or {}).get("root")
    return Path(root) if root and Path(root).is_dir() else None


@dataclass(frozen=True)
class ExportOptions:
    """What `export_bundle` makes of a checkpoint (the `vadedge export` options; see docs/export.md).

    precision: the model the bundle runs ("fp32" | "fp16" | "int8"); model.onnx (FP32) is always
    included as the reference. calib_data: normal footage for INT8 calibration (required for int8).
    score_data: normal footage for score statistics + threshold (default: calib_data, else the
    checkpoint's training data if present; False: skip, leaving calibration/threshold null).
    int8_target: "cpu" (uint8 activations, fastest in ONNX Runtime on CPU) or "trt" (symmetric Q/DQ
    that TensorRT builds); default "trt" with engine="trt", else "cpu".
    engine="trt" also builds a TensorRT engine on this machine (needs TensorRT and a GPU); plugins=True
    swaps the memory nodes for the vadedge TensorRT plugins first.
    """

    precision: str = "fp32"
    batch: Union[int, str] = 1
    calib_data: Union[str, Path, None] = None
    calib_method: str = "minmax"
    plugins: bool = False
    error_map: bool = True
    opset: int = 18
    engine: str = "onnx"
    pred: bool = False
    score_data: Union[str, Path, None, bool] = None
    target_far: float = DEFAULT_TARGET
    smoothing: float = DEFAULT_SMOOTHING
    min_event_frames: int = DEFAULT_MIN_EVENT_FRAMES
    fp16_keep: Optional[Iterable[str]] = None
    int8_target: Optional[str] = None
    int8_options: Any = None
    max_calib_clips: Optional[int] = None
    max_score_videos: Optional[int] = None
    plugin_libraries: Sequence[Union[str, Path]] = ()
    trt_options: Optional[dict] = None
    threads: Optional[int] = None
    progress: bool = True
    fps: Optional[float] = None  # trained frame rate for vadedge.json input.fps (default: sampling.trained_fps)


@dataclass
class _Job:
    """One export in progress: the options, the loaded checkpoint and what the steps produce."""

    model_dir: Path
    out: Path
    opts: ExportOptions
    ckpt: Any
    calib_split: Any = None
    score_path: Optional[Path] = None
    score_split: Any = None
    graph: GraphSpec = GraphSpec(batch=1, frames_input="frames")  # set by _export_fp32
    opset: int = 0
    state: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    engines: list = field(default_factory=list)
    calibration: Optional[dict] = None
    threshold: Optional[ThresholdSpec] = None
    prov: dict = field(default_factory=dict)
    steps: Progress = field(default_factory=lambda: Progress(logger, False))

    @property
    def cfg(self) -> dict:
        return self.ckpt.config

    @property
    def model(self) -> Any:
        return self.ckpt.model


def export_bundle(
    model_dir: Union[str, Path],
    out: Union[str, Path, None] = None,
    options: Optional[ExportOptions] = None,
    **overrides: Any,
) -> Path:
    """Export the checkpoint in `model_dir` to a bundle folder `out` (default MODEL_DIR/bundle); returns it.

    `options` (an ExportOptions) and/or keyword overrides of its fields (e.g. precision="int8").
    Steps: check → ONNX FP32 → FP16 / INT8 → TensorRT engine → score calibration → vadedge.json
    (validated) → model files checked against it, all in a staging folder that replaces `out` at the end.
    """
    opts = dataclasses.replace(options or ExportOptions(), **overrides)
    job = _prepare(Path(model_dir), out, opts)
    job.steps = Progress(logger, opts.progress)  # step messages: INFO with progress, else DEBUG
    work = _staging_dir(job.out)
    try:
        _export_fp32(job, work)
        if opts.precision == "fp16":
            _convert_fp16(job, work)
        if opts.precision == "int8":
            _quantize_int8(job, work)
        if opts.engine == "trt":
            job.engines.append(
                _build_trt(
                    work,
                    job.models[opts.precision],
                    opts.precision,
                    opts.plugins,
                    opts.plugin_libraries,
                    opts.trt_options or {},
                    job.steps,
                )
            )
        _calibrate_scores(job, work)
        save_bundle(work, _manifest(job), job.state)
        from .verify import check_bundle

        check_bundle(work)
        _replace_dir(work, job.out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    job.steps.info(f"bundle written to {job.out}")
    return job.out


def _prepare(model_dir: Path, out: Union[str, Path, None], opts: ExportOptions) -> _Job:
    """Every check that can fail fast (options, folders, footage, extras), then load the checkpoint."""
    from ..calibration.footage import open_normal_footage
    from .onnx_export import check_batch

    require("onnx")
    check_options(opts.precision, opts.engine, opts.calib_data, opts.plugins)
    opts = dataclasses.replace(opts, batch=check_batch(opts.batch))
    _check_checkpoint_dir(model_dir)
    if opts.engine == "trt":
        _trt_module("tensorrt")
        if (opts.trt_options or {}).get("trt") is None:
            require("tensorrt")  # fail before the export when TensorRT is absent (the extra is named)
    calib_split = open_normal_footage(opts.calib_data) if opts.calib_data is not None else None
    from vadedge.train.checkpoint import load_checkpoint  # imports torch

    ckpt = load_checkpoint(model_dir)
    out_path = Path(out) if out is not None else model_dir / "bundle"
    _prepare_out(out_path)
    if opts.score_data is None:
        score_path = Path(opts.calib_data) if opts.calib_data is not None else _default_score_data(ckpt.config)
    elif opts.score_data is False:
        score_path = None
    else:
        score_path = Path(str(opts.score_data))
    score_split = open_normal_footage(score_path) if score_path is not None else None
    return _Job(model_dir, out_path, opts, ckpt, calib_split, score_path, score_split)


def _staging_dir(out: Path) -> Path:
    """A fresh hidden folder beside `out`, created with the umask's permissions (mkdtemp's 0700 would
    leave the renamed bundle unreadable to a runtime running as another user)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        work = out.parent / f".{out.name}.{secrets.token_hex(6)}"
        try:
            work.mkdir(mode=0o777)
            return work
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _export_fp32(job: _Job, work: Path) -> None:
    from .onnx_export import export_onnx
    from .torch_graph import adaptable_params

    opts, cfg = job.opts, job.cfg
    state = {k: v.detach().to("cpu") for k, v in job.ckpt.state.items()}
    job.state = {k: v.numpy().astype(np.float32) for k, v in state.items()}
    job.steps.info(f"exporting {cfg['name']} ({cfg.get('preset')}) to ONNX (batch {opts.batch}) ...")
    info = export_onnx(
        job.model,
        state,
        work / MODEL_FILES["fp32"],
        batch=opts.batch,
        error_map=opts.error_map,
        pred=opts.pred,
        opset=opts.opset,
    )
    for item in info.params:  # MPN's θ: defaults live in state.npz next to the stream state
        job.state[item.name] = adaptable_params(job.model)[item.name].numpy().astype(np.float32)
    job.graph, job.opset = info.graph_spec(), info.opset
    job.models = {"fp32": MODEL_FILES["fp32"]}


def _convert_fp16(job: _Job, work: Path) -> None:
    from .fp16 import DEFAULT_KEEP, convert_to_fp16, precision_summary

    onnx = require("onnx")
    keep = tuple(job.opts.fp16_keep) if job.opts.fp16_keep is not None else DEFAULT_KEEP
    job.steps.info(f"converting to FP16 (kept in FP32: {', '.join(keep) or 'nothing'}) ...")
    m16 = convert_to_fp16(onnx.load(str(work / MODEL_FILES["fp32"])), keep)
    onnx.save(m16, str(work / MODEL_FILES["fp16"]))
    job.models["fp16"] = MODEL_FILES["fp16"]
    job.prov["fp16"] = {"keep_fp32": list(keep), "nodes": precision_summary(m16)}


def _quantize_int8(job: _Job, work: Path) -> None:
    from ..calibration.int8 import ClipFeeds, Int8Options, quantize_int8

    opts = job.opts
    target = opts.int8_target or ("trt" if opts.engine == "trt" else "cpu")
    if opts.engine == "trt" and target != "trt":
        raise ConfigError("a TensorRT engine needs the symmetric INT8 profile (--int8-target trt)")
    q = opts.int8_options or Int8Options.for_target(target)
    if opts.max_calib_clips:
        q = dataclasses.replace(q, max_clips=int(opts.max_calib_clips))
    assert opts.calib_data is not None  # check_options: INT8 needs calibration data
    job.steps.info(f"INT8: calibrating ({opts.calib_method}, up to {q.max_clips} clips) on {opts.calib_data} ...")
    reader = ClipFeeds(
        work / MODEL_FILES["fp32"],
        job.graph,
        job.model.spec,
        job.model.clip_length,
        job.state,
        opts.calib_data,
        max_clips=q.max_clips,
        threads=opts.threads,
    )
    report = quantize_int8(
        work / MODEL_FILES["fp32"], work / MODEL_FILES["int8"], reader, method=opts.calib_method, options=q
    )
    job.models["int8"] = MODEL_FILES["int8"]
    job.prov["int8"] = {
        **asdict(report),
        "data": Path(str(opts.calib_data)).name,
        "videos": len(job.calib_split.videos),
    }


def _calibrate_scores(job: _Job, work: Path) -> None:
    """Score statistics + threshold on normal footage, with the graph the bundle will run."""
    from ..calibration.scores import calibrate_scores, score_footage
    from ..runtime.runner import StreamRunner

    opts, model = job.opts, job.model
    score_path = job.score_path
    if job.score_split is None or score_path is None:
        job.steps.info("no score data: vadedge.json gets no calibration/threshold (pass --score-data)")
        return
    job.steps.info(f"score calibration on {score_path} with the {opts.precision} graph ...")
    stream = StreamRunner.for_model(
        work / job.models[opts.precision],
        job.graph,
        model.clip_length,
        job.state,
        precision=opts.precision,
        threads=opts.threads,
    )
    videos = score_footage(
        stream, job.score_split, model.spec, job.state, max_videos=opts.max_score_videos, progress=opts.progress
    )
    cal = calibrate_scores(
        videos, model.score_components, model.score_weights, target=opts.target_far, smoothing=opts.smoothing
    )
    job.calibration = {k: Stats(float(v["location"]), float(v["scale"])) for k, v in cal.manifest_calibration().items()}
    job.threshold = ThresholdSpec.from_dict(cal.threshold)
    trained_on = (job.cfg.get("data") or {}).get("root")
    job.prov["score_calibration"] = {
        **{k: v for k, v in cal.summary().items() if k != "stats"},
        "precision": opts.precision,
        "data": score_path.name,
        "held_out": not (trained_on and Path(trained_on).resolve() == score_path.resolve()),
    }


def _manifest(job: _Job) -> Manifest:
    """The one place a bundle's vadedge.json is put together."""
    opts, model, cfg = job.opts, job.model, job.cfg
    return Manifest(
        family=cfg["name"],
        preset=cfg.get("preset"),
        precision=opts.precision,
        input=InputSection(**model.spec.to_dict(), clip_length=int(model.clip_length), fps=trained_fps(cfg, opts.fps)),
        graph=job.graph,
        models=dict(job.models),
        engines=tuple(job.engines),
        state_file="state.npz",
        score=ScoreSpec(
            signs={k: int(v) for k, v in model.score_components.items()},
            weights={k: float(v) for k, v in model.score_weights.items()},
            calibration=job.calibration,
            smoothing=float(opts.smoothing),
            threshold=job.threshold,
            min_event_frames=int(opts.min_event_frames),
        ),
        provenance=_provenance(job),
    )


def _build_trt(
    work: Path, onnx_name: str, precision: str, plugins: bool, plugin_libraries, options: dict, steps: Progress
) -> EngineSpec:
    onnx = require("onnx")
    trt_mod = _trt_module("tensorrt")
    src = work / onnx_name
    libs = [Path(p) for p in plugin_libraries]
    if plugins:
        plug = _trt_module("plugins")
        src = work / onnx_name.replace(".onnx", ".plugins.onnx")
        onnx.save(plug.replace_with_plugins(onnx.load(str(work / onnx_name))), str(src))
        if not libs:
            steps.info("building the vadedge TensorRT plugins (CMake) ...")
            libs = [Path(plug.build_plugins(work / "plugins"))]
        for lib in libs:  # ship the library beside the engine (the sidecar names it by file name)
            if lib.parent.resolve() != work.resolve():
                shutil.copy2(lib, work / lib.name)
    engine_file = f"model.{precision}.engine"
    steps.info(f"building the TensorRT {precision} engine ...")
    side = trt_mod.build_engine(src, work / engine_file, precision=precision, plugin_libraries=libs, **options)
    shutil.rmtree(work / "plugins", ignore_errors=True)
    return EngineSpec.from_build(
        engine_file, precision, side, sidecar=engine_file + ".json", onnx=src.name, plugins=bool(plugins)
    )


def _provenance(job: _Job) -> dict:
    """Versions, checkpoint and data summaries — no absolute paths of the build machine. The checkpoint
    is recorded by folder name and relative to the bundle (what the torch backend / MPN adaptation use)."""
    import onnx
    import onnxruntime
    import torch

    cfg, opts = job.cfg, job.opts
    data = cfg.get("data") or {}
    return {
        "vadedge_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "opset": job.opset,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "checkpoint": {
            "folder": job.model_dir.resolve().name,
            "relative_path": os.path.relpath(job.model_dir.resolve(), job.out.resolve()),
            "name": cfg.get("name"),
            "preset": cfg.get("preset"),
            "seed": cfg.get("seed"),
            "epochs": len(cfg.get("history", [])) or None,
            "stage": cfg.get("stage"),
        },
        "training_data": {
            "fingerprint": data.get("fingerprint"),
            "videos": data.get("videos"),
            "clips": data.get("clips"),
        },
        "export": {"batch": opts.batch, "error_map": opts.error_map},
        **job.prov,
    }


def _replace_dir(src: Path, dst: Path) -> None:
    """Move the finished bundle into place (replacing an old bundle at `dst`)."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dst.rename(old)
        src.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.rename(dst)


def describe(bundle_dir: Union[str, Path]) -> str:
    """Human-readable summary of a bundle (what `vadedge info` prints)."""
    from vadedge.bundle import load_bundle

    b = load_bundle(bundle_dir)
    m = b.manifest
    g, inp, sc = m.graph, m.input, m.score
    lines = [
        f"bundle      {b.path}",
        f"family      {m.family} (preset {m.preset}), runs {b.precision}",
        f"input       {inp.height}x{inp.width} {inp.color}, {inp.frames} context frame(s), "
        f"clip of {inp.clip_length}, {inp.frame_rate:g} fps"
        f"{'' if inp.fps is not None else ' (not recorded: the Ped2 default)'}",
        f"batch       {g.batch} stream(s) per call",
    ]
    for p in m.models:
        path = b.model_file(p)
        size = path.stat().st_size / 1e6 if path.is_file() else float("nan")
        lines.append(f"model       {p:5s} {m.models[p]} ({size:.2f} MB)")
    for e in m.engines:
        lines.append(f"engine      {e.precision:5s} {e.file} (TensorRT {e.tensorrt or '?'}, {e.device or '?'})")
    lines.append(
        f"inputs      {g.frames_input} uint8 [B, {inp.clip_length}, {inp.height}, {inp.width}, {inp.channels}]"
    )
    for s in g.state:
        lines.append(f"            {s.input} {s.dtype} [B, {', '.join(map(str, s.shape))}] -> {s.output}")
    for d in g.side_inputs:
        lines.append(f"            {d.input} {d.dtype} [B, {', '.join(map(str, d.shape))}] (host-computed)")
    for s in g.params:
        lines.append(f"            {s.input} {s.dtype} [{', '.join(map(str, s.shape))}] (adapted parameter)")
    lines.append(
        "scores      " + ", ".join(f"{c} ({'+' if sc.signs[c] > 0 else '-'}, w={sc.weights[c]:g})" for c in g.scores)
    )
    if sc.local:
        lines.append(
            "local       "
            + ", ".join(
                f"{c} ({'+' if sc.signs[c] > 0 else '-'}, w={sc.weights[c]:g}; {s.window} px window of {s.source})"
                for c, s in sc.local.items()
            )
        )
    for c, why in sc.dropped.items():
        lines.append(f"dropped     {c}: {why}")
    if sc.mask is not None:
        lines.append(
            f"mask        {sc.mask.mode} {len(sc.mask.polygons)} polygon(s) in a {sc.mask.width}x{sc.mask.height} frame"
        )
    if g.extra_outputs:
        lines.append(f"extra       {', '.join(g.extra_outputs)}")
    if sc.calibration:
        for c, st in sc.calibration.items():
            lines.append(f"calibration {c}: location {st.location:.5g}, scale {st.scale:.5g}")
    else:
        lines.append("calibration none (the runtime cannot normalise scores causally)")
    th = sc.threshold
    if th is not None:
        lines.append(
            f"threshold   on {th.on:.4g} / off {th.off:.4g} ({th.policy}, target "
            f"{th.target}), smoothing {sc.smoothing}, min event {sc.min_event_frames} frames"
        )
    pv = m.provenance
    lines.append(
        f"provenance  vadedge {pv.get('vadedge_version')}, opset {pv.get('opset')}, created {pv.get('created')}"
    )
    return "\n".join(lines)


def manifest_json(bundle_dir: Union[str, Path]) -> str:
    from vadedge.bundle import load_bundle

    return json.dumps(load_bundle(bundle_dir).manifest.to_dict(), indent=1)
