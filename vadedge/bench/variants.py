"""What each benchmark row runs: the model source (bundle, checkpoint or preset) and one Detector per backend.

Rows: `torch` (the checkpoint's `stream_step`), `ort-fp32` / `ort-fp16` / `ort-int8` (ONNX Runtime on
the CPU with the bundle's model of that precision) and `trt` (a TensorRT engine). Models a bundle
lacks are derived into a work folder: FP32 is exported from the checkpoint, FP16 converted from the
FP32 graph, INT8 quantised from it (the `cpu` profile, calibrated on the checkpoint's normal
training footage, `--calib-data`, or synthetic frames). `--fp16` / `--int8` / `--engine` take
ready-made files instead. A row that cannot run is kept with the reason (never dropped).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ..bundle import BUNDLE_FILE, Bundle, EngineSpec, load_bundle, save_bundle
from ..errors import ConfigError
from ..progress import Progress

if TYPE_CHECKING:
    from ..preprocess import InputSpec
    from ..runtime import Detector

Loader = Callable[[Optional[int]], "Detector"]  # a row's Detector factory: threads -> loaded Detector

BACKENDS = ("torch", "ort-fp32", "ort-fp16", "ort-int8", "trt")
DEFAULT_BACKENDS = ("torch", "ort-fp32", "ort-int8", "trt")
_SILENT = Progress(logging.getLogger(__name__), enabled=False)  # default: step messages at DEBUG
PRECISION = {"ort-fp32": "fp32", "ort-fp16": "fp16", "ort-int8": "int8"}


def parse_backends(text: Union[str, Sequence[str]]) -> list[str]:
    """'torch,ort-fp32' → ['torch', 'ort-fp32']; ConfigError naming the valid ones for anything else."""
    items = [b.strip().lower() for b in (text.split(",") if isinstance(text, str) else text) if b.strip()]
    if not items:
        raise ConfigError(f"--backends is empty; choose from {', '.join(BACKENDS)}")
    bad = [b for b in items if b not in BACKENDS]
    if bad:
        raise ConfigError(f"unknown backend {', '.join(repr(b) for b in bad)}; choose from {', '.join(BACKENDS)}")
    return list(dict.fromkeys(items))


@dataclass
class ModelSource:
    """Where the benchmarked model came from; `bundle` is an FP32 ONNX bundle (given or exported)."""

    label: str
    kind: str  # "bundle" | "checkpoint" | "preset"
    bundle: Optional[Path] = None
    checkpoint: Optional[Path] = None
    reasons: dict[str, str] = field(default_factory=dict)  # why a derived model could not be made


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _checkpoint_of_bundle(path: Path) -> Optional[Path]:
    from ..runtime.backends.torch import checkpoint_of

    try:
        return checkpoint_of(load_bundle(path, check_files=False))
    except Exception:  # noqa: BLE001 - no checkpoint is a normal case (row marked unavailable)
        return None


def resolve_source(
    model: Optional[Union[str, Path]], preset: Optional[str], workdir: Path, report: Progress = _SILENT
) -> ModelSource:
    """Bundle folder, checkpoint folder or `MODEL:PRESET` (random weights) → a ModelSource with an FP32 bundle."""
    if model is not None and preset is not None:
        raise ConfigError("pass either --model or --preset, not both")
    if preset is not None:
        ckpt = _preset_checkpoint(preset, workdir, report)
        src = ModelSource(preset, "preset", checkpoint=ckpt)
    elif model is None:
        from ..runtime.defaults import default_bundle

        path = default_bundle()
        return ModelSource(f"default bundle ({path})", "bundle", bundle=path, checkpoint=_checkpoint_of_bundle(path))
    else:
        path = Path(model)
        if not path.exists():
            raise ConfigError(
                f"model path {path} does not exist (pass a bundle folder, a checkpoint folder or --preset MODEL:PRESET)"
            )
        if (path / BUNDLE_FILE).is_file():
            load_bundle(path)  # validate now: a broken bundle is a user error
            return ModelSource(str(path), "bundle", bundle=path, checkpoint=_checkpoint_of_bundle(path))
        if not (path / "config.json").is_file():
            raise ConfigError(f"{path} is neither a bundle (no {BUNDLE_FILE}) nor a checkpoint (no config.json)")
        ckpt = path
        src = ModelSource(str(path), "checkpoint", checkpoint=ckpt)
    out = workdir / "fp32"
    if (out / BUNDLE_FILE).is_file():
        src.bundle = out
    elif not (_has("torch") and _has("onnx")):
        src.reasons["ort"] = "exporting a checkpoint needs torch and onnx: pip install 'vadedge[train,export]'"
    else:
        from ..export import export_bundle

        report.info(f"exporting {src.label} to ONNX (dynamic batch) ...")
        src.bundle = export_bundle(ckpt, out, batch="dynamic", score_data=False, progress=False)
    return src


def _preset_checkpoint(preset: str, workdir: Path, report: Progress) -> Path:
    name, _, pname = preset.partition(":")
    if not name:
        raise ConfigError(f"--preset must be MODEL[:PRESET], got {preset!r}")
    out = workdir / "preset-checkpoint"
    if (out / "config.json").is_file():
        return out
    from .._optional import require

    torch = require("torch")
    from ..train.checkpoint import save_checkpoint
    from ..train.registry import get_model_entry, resolve_config

    cfg = resolve_config(name, pname or None)
    report.info(f"building {name}:{cfg['preset']} with random weights (speed does not depend on them) ...")
    torch.manual_seed(0)
    model = get_model_entry(name).build(cfg["model"]).eval()
    save_checkpoint(out, model, model.initial_state(), {**cfg, "data": None, "seed": 0})
    return out


def _load_onnx_path(path: Path, precision: str) -> Path:
    """A bundle folder (its model of `precision`) or an .onnx file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--{precision} {path} does not exist")
    if path.is_dir():
        return load_bundle(path).model_file(precision)
    return path


class VariantBundle:
    """A work copy of the FP32 bundle to which FP16 / INT8 models are added as they are derived."""

    def __init__(self, fp32_bundle: Path, workdir: Path) -> None:
        self.src = load_bundle(fp32_bundle)
        self.path = workdir / "variants"
        if not (self.path / BUNDLE_FILE).is_file():
            self.path.mkdir(parents=True, exist_ok=True)
            for prec in self.src.manifest.models:
                shutil.copy2(self.src.model_file(prec), self.path / self.src.manifest.models[prec])
            manifest = dataclasses.replace(self.src.manifest, precision=None, engines=())
            save_bundle(self.path, manifest, self.src.state)

    def bundle(self) -> Bundle:
        return load_bundle(self.path)

    def add_model(self, precision: str, file: Path) -> None:
        b = self.bundle()
        target = self.path / f"model.{precision}.onnx" if precision != "fp32" else self.path / "model.onnx"
        if Path(file).resolve() != target.resolve():
            shutil.copy2(file, target)
        models = {**b.manifest.models, precision: target.name}
        save_bundle(self.path, dataclasses.replace(b.manifest, models=models), b.state)

    def add_engine(self, engine: Path, info: dict) -> None:
        b = self.bundle()
        entry = EngineSpec.from_build(Path(engine).name, info.get("precision", "fp16"), info)
        save_bundle(self.path, dataclasses.replace(b.manifest, engines=(*b.manifest.engines, entry)), b.state)


def calibration_footage(
    source: ModelSource, calib_data: Optional[Path], workdir: Path, spec: InputSpec, videos: int = 4
) -> tuple[Path, str]:
    """Normal footage for INT8: --calib-data, else the checkpoint's training data (first `videos`), else synthetic."""
    from ..calibration.footage import open_normal_footage

    if calib_data is not None:
        return Path(calib_data), str(calib_data)
    root = None
    if source.checkpoint is not None:
        cfg = json.loads((Path(source.checkpoint) / "config.json").read_text())
        root = (cfg.get("data") or {}).get("root")
    if root and Path(root).is_dir():
        split = open_normal_footage(root)
        sub = workdir / "calib-footage"
        if not sub.is_dir():
            sub.mkdir(parents=True)
            for v in split.videos[:videos]:
                (sub / Path(v.source).name).symlink_to(Path(v.source).resolve())
        return sub, f"{min(videos, len(split.videos))} training videos of {root}"
    from ..synthetic import generate_dataset

    out = workdir / "calib-synthetic"
    if not (out / "training").is_dir():
        generate_dataset(
            out, train_videos=2, test_videos=1, frames_per_video=40, height=spec.height, width=spec.width, seed=0
        )
    return out, "synthetic frames (vadedge.synthetic)"


def derive_fp16(vb: VariantBundle) -> None:
    from .._optional import require
    from ..export.fp16 import convert_to_fp16

    onnx = require("onnx")
    b = vb.bundle()
    m16 = convert_to_fp16(onnx.load(str(b.model_file("fp32"))))
    out = vb.path / "model.fp16.onnx"
    onnx.save(m16, str(out))
    vb.add_model("fp16", out)


def derive_int8(vb: VariantBundle, footage: Path, max_clips: int = 64) -> dict:
    from ..calibration.int8 import ClipFeeds, Int8Options, quantize_int8

    b = vb.bundle()
    opts = Int8Options.for_target("cpu", max_clips=max_clips)
    reader = ClipFeeds(
        b.model_file("fp32"),
        b.manifest.graph,
        b.input_spec,
        b.clip_length,
        {k: np.asarray(v) for k, v in b.state.items()},
        footage,
        max_clips=max_clips,
    )
    out = vb.path / "model.int8.onnx"
    report = quantize_int8(b.model_file("fp32"), out, reader, options=opts)
    vb.add_model("int8", out)
    return {"clips": report.clips, "quantized_nodes": report.quantized_nodes, "profile": "cpu"}


@dataclass
class Row:
    """One backend of the table: how to load its Detector, or why it cannot run."""

    backend: str
    reason: Optional[str] = None
    load: Optional[Loader] = None  # set when the row can run (reason None)
    detail: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.reason is None


def prepare_rows(
    backends: list[str],
    source: ModelSource,
    workdir: Path,
    *,
    fp16: Optional[Path] = None,
    int8: Optional[Path] = None,
    engine: Optional[Path] = None,
    calib_data: Optional[Path] = None,
    calib_clips: int = 64,
    report: Progress = _SILENT,
) -> tuple[list[Row], Optional[Path]]:
    """One Row per requested backend (same order); returns them and the variant bundle's folder."""
    vb: Optional[VariantBundle] = VariantBundle(source.bundle, workdir) if source.bundle is not None else None
    rows: list[Row] = []
    for name in backends:
        row = Row(name)
        try:
            if name == "torch":
                _torch_row(row, source)
            elif name in PRECISION:
                _ort_row(row, vb, source, workdir, {"fp16": fp16, "int8": int8}, calib_data, calib_clips, report)
            elif name == "trt":
                _trt_row(row, vb, source, engine, report)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend that fails to prepare is reported, not fatal
            row.reason = f"failed to prepare: {type(exc).__name__}: {exc}"
        rows.append(row)
    return rows, (vb.path if vb is not None else None)


def _torch_row(row: Row, source: ModelSource) -> None:
    if not _has("torch"):
        row.reason = "torch is not installed (pip install 'vadedge[train]')"
        return
    if source.checkpoint is None:
        row.reason = "no training checkpoint for this bundle (pass a checkpoint folder or --preset)"
        return
    ckpt = source.checkpoint

    def load(threads: Optional[int]) -> Detector:
        from ..runtime import Detector

        return Detector.load(ckpt, backend="torch", device="cpu", threads=threads, heatmap=True)

    row.load, row.detail = load, {"checkpoint": str(ckpt)}


def _ort_row(
    row: Row,
    vb: Optional[VariantBundle],
    source: ModelSource,
    workdir: Path,
    given: dict,
    calib_data: Optional[Path],
    calib_clips: int,
    report: Progress,
) -> None:
    if not _has("onnxruntime"):
        row.reason = "onnxruntime is not installed (pip install onnxruntime)"
        return
    if vb is None:
        row.reason = source.reasons.get("ort", "no ONNX model")
        return
    precision = PRECISION[row.backend]
    models = vb.bundle().manifest.models
    if precision not in models:
        if given.get(precision) is not None:
            vb.add_model(precision, _load_onnx_path(given[precision], precision))
        elif source.bundle is not None and precision in source_models(source):
            vb.add_model(precision, load_bundle(source.bundle).model_file(precision))
        elif not _has("onnx"):
            row.reason = f"deriving the {precision} model needs onnx: pip install 'vadedge[export]'"
            return
        elif precision == "fp16":
            report.info("deriving the FP16 model (vadedge.export.fp16) ...")
            derive_fp16(vb)
        else:
            footage, what = calibration_footage(source, calib_data, workdir, vb.src.input_spec)
            report.info(f"quantising to INT8 (cpu profile, {calib_clips} clips of {what}) ...")
            row.detail["int8"] = {**derive_int8(vb, footage, calib_clips), "calibration": what}
    row.detail["model"] = str(vb.bundle().model_file(precision))
    row.load = ort_loader(vb.path, precision)


def ort_loader(path: Path, precision: str, session_config: Optional[dict] = None) -> Loader:
    """A Detector factory for ONNX Runtime on the CPU, optionally with extra session config entries."""

    def load(threads: Optional[int]) -> Detector:
        from ..runtime import Detector

        if not session_config:
            return Detector.load(path, backend="onnxruntime", device="cpu", precision=precision, threads=threads)
        from ..runtime.backends.onnxruntime import OnnxRuntimeBackend
        from ..runtime.scoring import ScoreRecipe

        bundle = load_bundle(path)
        be = OnnxRuntimeBackend(
            bundle, device="cpu", precision=precision, threads=threads, session_config=session_config
        )
        return Detector(bundle, be, ScoreRecipe.from_manifest(bundle.manifest.score))

    return load


def parse_session_config(text: Optional[str]) -> dict:
    """'session.intra_op.allow_spinning=0,k=v' → {key: value}; ConfigError for an item without '='."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad session config entry {item!r}: use KEY=VALUE (ONNX Runtime session config keys)")
        out[key.strip()] = value.strip()
    return out


def add_ab_rows(rows: list[Row], session_config: dict) -> list[Row]:
    """After every available ORT row, a twin '<backend>+ab' loading the same model with `session_config`."""
    out = []
    for row in rows:
        out.append(row)
        if row.backend in PRECISION and row.available and "model" in row.detail:
            path = Path(row.detail["model"]).parent
            twin = Row(
                f"{row.backend}+ab",
                load=ort_loader(path, PRECISION[row.backend], session_config),
                detail={**row.detail, "session_config": session_config},
            )
            out.append(twin)
    return out


def source_models(source: ModelSource) -> dict:
    if source.kind != "bundle" or source.bundle is None:
        return {}
    return dict(load_bundle(source.bundle).manifest.models)


def _trt_row(
    row: Row, vb: Optional[VariantBundle], source: ModelSource, engine: Optional[Path], report: Progress
) -> None:
    if not _has("tensorrt"):
        row.reason = "TensorRT is not installed (pip install 'vadedge[trt]'; needs an NVIDIA GPU)"
        return
    if vb is None:
        row.reason = source.reasons.get("ort", "no ONNX model to build an engine from")
        return
    if engine is None:
        from ..export.tensorrt import build_engine

        engine = vb.path / "model.fp16.engine"
        if not engine.is_file():
            report.info("building a TensorRT FP16 engine (vadedge.export.tensorrt.build_engine) ...")
            info = build_engine(vb.bundle().model_file("fp32"), engine, precision="fp16")
            vb.add_engine(engine, {"precision": "fp16", **{k: v for k, v in info.items() if k != "file"}})
    path, eng = vb.path, Path(engine)
    row.detail["engine"] = str(eng)

    def load(threads: Optional[int]) -> Detector:
        from ..runtime import Detector

        return Detector.load(path, backend="tensorrt", device="cuda:0", engine=eng)

    row.load = load
