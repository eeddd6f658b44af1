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
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from vadedge._optional import require
from vadedge._version import __version__
from vadedge.bundle import BUNDLE_FILE, PRECISIONS, save_bundle
from vadedge.errors import ConfigError
from vadedge.progress import Progress

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
        raise ConfigError(f"the {engine} engine cannot run {precision} (it can do: "
                          f"{', '.join(ENGINE_PRECISIONS[engine])})")
    if precision == "int8" and calib_data is None:
        raise ConfigError("INT8 needs calibration data: pass --calib-data DIR with normal footage "
                          "(a dataset root with training/, or a folder of normal videos)")
    if plugins and engine != "trt":
        raise ConfigError("--plugins swaps the memory nodes for TensorRT plugins; it needs --engine trt "
                          "(ONNX Runtime runs the standard-op functions instead)")


def _trt_module(name: str):
    try:
        return importlib.import_module(f"vadedge.export.{name}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vadedge.export"):
            raise ConfigError(f"this vadedge has no vadedge.export.{name} module; "
                              f"TensorRT export is unavailable") from exc
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
            raise ConfigError(f"--out {out} is a non-empty folder that is not a vadedge bundle; "
                              f"choose another path (a bundle there would be replaced)")


def _default_score_data(cfg: dict) -> Optional[Path]:
    root = (cfg.get("data") or {}).get("root")
    return Path(root) if root and Path(root).is_dir() else None


def export_bundle(model_dir: Union[str, Path], out: Union[str, Path, None] = None, *, precision: str = "fp32",
                  batch: Union[int, str] = 1, calib_data: Union[str, Path, None] = None,
                  calib_method: str = "minmax", plugins: bool = False, error_map: bool = True,
                  opset: int = 18, engine: str = "onnx", pred: bool = False,
                  score_data: Union[str, Path, None, bool] = None, target_far: float = 0.01,
                  smoothing: float = 0.3, min_event_frames: int = 5, fp16_keep: Optional[Iterable[str]] = None,
                  int8_target: Optional[str] = None, int8_options=None, max_calib_clips: Optional[int] = None,
                  max_score_videos: Optional[int] = None,
                  plugin_libraries: Sequence[Union[str, Path]] = (), trt_options: Optional[dict] = None,
                  threads: Optional[int] = None, progress: bool = True) -> Path:
    """Export the checkpoint in `model_dir` to a bundle folder `out` (default MODEL_DIR/bundle); returns it.

    precision: the model the bundle runs ("fp32" | "fp16" | "int8"); model.onnx (FP32) is always
    included as the reference. calib_data: normal footage for INT8 calibration (required for int8).
    score_data: normal footage for score statistics + threshold (default: calib_data, else the
    checkpoint's training data if present; False: skip, leaving calibration/threshold null).
    int8_target: "cpu" (uint8 activations, fastest in ONNX Runtime on CPU) or "trt" (symmetric Q/DQ
    that TensorRT builds); default "trt" with engine="trt", else "cpu".
    engine="trt" also builds a TensorRT engine on this machine (needs TensorRT and a GPU); plugins=True
    swaps the memory nodes for the vadedge TensorRT plugins first. See docs/export.md.
    """
    from ..calibration.int8 import ClipFeeds, Int8Options, quantize_int8
    from ..calibration.scores import calibrate_scores, score_footage
    from ..calibration.footage import open_normal_footage
    from .fp16 import DEFAULT_KEEP, convert_to_fp16, precision_summary
    from .onnx_export import check_batch, export_onnx
    from .runner import OnnxStream
    from .verify import check_bundle

    onnx = require("onnx")
    steps = Progress(logger, progress)  # step messages: INFO with progress, else DEBUG
    check_options(precision, engine, calib_data, plugins)
    batch = check_batch(batch)
    _check_checkpoint_dir(Path(model_dir))
    if engine == "trt":
        _trt_module("tensorrt")
        if (trt_options or {}).get("trt") is None:
            require("tensorrt")  # fail before the export when TensorRT is absent (the extra is named)
    calib_split = open_normal_footage(calib_data) if calib_data is not None else None  # fail fast on bad folders
    from vadedge.train.checkpoint import load_checkpoint  # imports torch

    ckpt = load_checkpoint(model_dir)
    cfg = ckpt.config
    model = ckpt.model
    out = Path(out) if out is not None else Path(model_dir) / "bundle"
    _prepare_out(out)
    if score_data is None:
        score_path = Path(calib_data) if calib_data is not None else _default_score_data(cfg)
    elif score_data is False:
        score_path = None
    else:
        score_path = Path(score_data)
    score_split = open_normal_footage(score_path) if score_path is not None else None

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().to("cpu") for k, v in ckpt.state.items()}
        state_np = {k: v.numpy().astype(np.float32) for k, v in state.items()}
        steps.info(f"exporting {cfg['name']} ({cfg.get('preset')}) to ONNX (batch {batch}) ...")
        info = export_onnx(model, state, work / MODEL_FILES["fp32"], batch=batch, error_map=error_map,
                           pred=pred, opset=opset)
        from .torch_graph import adaptable_params

        for item in info.params:  # MPN's θ: defaults live in state.npz next to the stream state
            state_np[item["name"]] = adaptable_params(model)[item["name"]].numpy().astype(np.float32)
        graph = info.manifest()
        models = {"fp32": MODEL_FILES["fp32"]}
        prov: dict = {}
        if precision == "fp16":
            keep = tuple(fp16_keep) if fp16_keep is not None else DEFAULT_KEEP
            steps.info(f"converting to FP16 (kept in FP32: {', '.join(keep) or 'nothing'}) ...")
            m16 = convert_to_fp16(onnx.load(str(work / MODEL_FILES["fp32"])), keep)
            onnx.save(m16, str(work / MODEL_FILES["fp16"]))
            models["fp16"] = MODEL_FILES["fp16"]
            prov["fp16"] = {"keep_fp32": list(keep), "nodes": precision_summary(m16)}
        if precision == "int8":
            target = int8_target or ("trt" if engine == "trt" else "cpu")
            if engine == "trt" and target != "trt":
                raise ConfigError("a TensorRT engine needs the symmetric INT8 profile (--int8-target trt)")
            opts = int8_options or Int8Options.for_target(target)
            if max_calib_clips:
                opts = dataclasses.replace(opts, max_clips=int(max_calib_clips))
            steps.info(f"INT8: calibrating ({calib_method}, up to {opts.max_clips} clips) on {calib_data} ...")
            reader = ClipFeeds(work / MODEL_FILES["fp32"], graph, model.spec, model.clip_length, state_np,
                               calib_data, max_clips=opts.max_clips, threads=threads)
            report = quantize_int8(work / MODEL_FILES["fp32"], work / MODEL_FILES["int8"], reader,
                                   method=calib_method, options=opts)
            models["int8"] = MODEL_FILES["int8"]
            prov["int8"] = {**asdict(report), "data": str(Path(calib_data).resolve()),
                            "videos": len(calib_split.videos)}
        engines = []
        if engine == "trt":
            engines.append(_build_trt(work, models[precision], precision, plugins, plugin_libraries,
                                      trt_options or {}, steps))
        calibration = threshold = None
        if score_split is not None:
            steps.info(f"score calibration on {score_path} with the {precision} graph ...")
            stream = OnnxStream(work / models[precision], graph, model.clip_length, threads=threads)
            videos = score_footage(stream, score_split, model.spec, state_np, max_videos=max_score_videos,
                                   progress=progress)
            cal = calibrate_scores(videos, model.score_components, model.score_weights, target=target_far,
                                   smoothing=smoothing)
            calibration, threshold = cal.manifest_calibration(), cal.threshold
            trained_on = (cfg.get("data") or {}).get("root")
            prov["score_calibration"] = {
                **{k: v for k, v in cal.summary().items() if k != "stats"}, "precision": precision,
                "data": str(score_path.resolve()),
                "held_out": not (trained_on and Path(trained_on).resolve() == score_path.resolve()),
            }
        else:
            steps.info("no score data: vadedge.json gets no calibration/threshold (pass --score-data)")
        manifest = {
            "schema_version": 1,
            "family": cfg["name"],
            "preset": cfg.get("preset"),
            "precision": precision,
            "input": {**model.spec.to_dict(), "clip_length": model.clip_length},
            "graph": graph,
            "models": models,
            "engines": engines,
            "state_file": "state.npz",
            "score": {
                "signs": {k: int(v) for k, v in model.score_components.items()},
                "weights": {k: float(v) for k, v in model.score_weights.items()},
                "calibration": calibration,
                "smoothing": float(smoothing),
                "threshold": threshold,
                "min_event_frames": int(min_event_frames),
            },
            "provenance": _provenance(cfg, Path(model_dir), info.opset, batch, error_map, prov),
        }
        save_bundle(work, manifest, state_np)
        check_bundle(work)
        _replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    steps.info(f"bundle written to {out}")
    return out


def _build_trt(work: Path, onnx_name: str, precision: str, plugins: bool, plugin_libraries, options: dict,
               steps: Progress) -> dict:
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
    device = side.get("device")
    entry = {"file": engine_file, "precision": precision, "tensorrt": side.get("tensorrt"),
             "device": device.get("name") if isinstance(device, dict) else device,
             "sidecar": engine_file + ".json", "onnx": src.name, "plugins": bool(plugins)}
    return {k: v for k, v in entry.items() if v is not None}


def _provenance(cfg: dict, model_dir: Path, opset: int, batch, error_map: bool, extra: dict) -> dict:
    import onnx
    import onnxruntime
    import torch

    data = cfg.get("data") or {}
    return {
        "vadedge_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "opset": opset,
        "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        "checkpoint": {"path": str(model_dir.resolve()), "name": cfg.get("name"), "preset": cfg.get("preset"),
                       "seed": cfg.get("seed"), "epochs": len(cfg.get("history", [])) or None,
                       "stage": cfg.get("stage")},
        "training_data": {"fingerprint": data.get("fingerprint"), "videos": data.get("videos"),
                          "clips": data.get("clips")},
        "export": {"batch": batch, "error_map": error_map},
        **extra,
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
    g = m["graph"]
    lines = [f"bundle      {b.path}",
             f"family      {m['family']} (preset {m.get('preset')}), runs {b.precision}",
             "input       {height}x{width} {color}, {frames} context frame(s), "
             "clip of {clip_length}".format(**m["input"]),
             f"batch       {g['batch']} stream(s) per call"]
    for p, f in m["models"].items():
        size = (b.path / f).stat().st_size / 1e6
        lines.append(f"model       {p:5s} {f} ({size:.2f} MB)")
    for e in m.get("engines", []):
        lines.append(f"engine      {e['precision']:5s} {e['file']} "
                     f"(TensorRT {e.get('tensorrt', '?')}, {e.get('device', '?')})")
    lines.append(f"inputs      {g['frames_input']} uint8 [B, {m['input']['clip_length']}, {m['input']['height']}, "
                 f"{m['input']['width']}, {1 if m['input']['color'] == 'gray' else 3}]")
    for s in g["state"]:
        lines.append(f"            {s['input']} {s['dtype']} [B, {', '.join(map(str, s['shape']))}] -> {s['output']}")
    for s in g.get("side_inputs", []):
        lines.append(f"            {s['input']} {s['dtype']} [B, {', '.join(map(str, s['shape']))}] (host-computed)")
    for s in g["params"]:
        lines.append(f"            {s['input']} {s['dtype']} [{', '.join(map(str, s['shape']))}] (adapted parameter)")
    sc = m["score"]
    lines.append("scores      " + ", ".join(f"{c} ({'+' if sc['signs'][c] > 0 else '-'}, w={sc['weights'][c]:g})"
                                            for c in g["scores"]))
    if g.get("extra_outputs"):
        lines.append(f"extra       {', '.join(g['extra_outputs'])}")
    if sc.get("calibration"):
        for c, st in sc["calibration"].items():
            lines.append(f"calibration {c}: location {st['location']:.5g}, scale {st['scale']:.5g}")
    else:
        lines.append("calibration none (the runtime cannot normalise scores causally)")
    th = sc.get("threshold")
    if th:
        lines.append(f"threshold   on {th['on']:.4g} / off {th['off']:.4g} ({th.get('policy')}, target "
                     f"{th.get('target')}), smoothing {sc.get('smoothing')}, "
                     f"min event {sc.get('min_event_frames')} frames")
    pv = m["provenance"]
    lines.append(f"provenance  vadedge {pv.get('vadedge_version')}, opset {pv.get('opset')}, "
                 f"created {pv.get('created')}")
    return "\n".join(lines)


def manifest_json(bundle_dir: Union[str, Path]) -> str:
    from vadedge.bundle import load_bundle

    return json.dumps(load_bundle(bundle_dir).manifest, indent=1)
