"""Export quality: FP32 / FP16 / INT8 ONNX models of one checkpoint, evaluated in ONNX Runtime, side by side.

For each variant (e.g. `fp32`, `fp16`, `int8:cpu:minmax`) this script builds the graph from ONE FP32
export, scores DATA/testing in stream order with ONNX Runtime (state carried by the caller), and reports
the frame-level AUC under the paper protocol (per-video min-max) and the streaming protocol (robust
statistics from the same variant on DATA/training, causal EMA) — the logic of `vadedge.train.evaluate`
with an ONNX session standing in for the torch model — plus the score agreement with FP32 and the
latency of all variants measured interleaved in one run.

    python -m vadedge.train.experiments.export_quality runs/ped2-mnad-pred-edge-s \\
        --data ../shared/datasets/ped2 --out runs/export-quality

Variants: fp32 | fp16[:keep=memory+prep+tail] | int8[:cpu|trt][:minmax|entropy|percentile][:head=N]
(head=N keeps the last N convolutions in float).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from vadedge.bundle import GraphSpec
from vadedge.commands._logging import DEFAULT, QUIET, console_logging
from vadedge.progress import Progress, progress_bar

logger = logging.getLogger(__name__)

DEFAULT_VARIANTS = ("fp32", "fp16", "int8:cpu:minmax", "int8:trt:minmax")


def parse_variant(spec: str) -> dict:
    """'int8:trt:entropy' → {"name", "precision", "target", "method"}; 'fp16:keep=memory+tail' → keep list."""
    from vadedge.errors import ConfigError

    parts = spec.split(":")
    precision = parts[0]
    out: dict[str, Any] = {"name": spec, "precision": precision}
    if precision == "fp32" and len(parts) == 1:
        return out
    if precision == "fp16":
        from vadedge.export.fp16 import DEFAULT_KEEP

        out["keep"] = list(DEFAULT_KEEP)
        for p in parts[1:]:
            if not p.startswith("keep="):
                raise ConfigError(f"bad FP16 variant {spec!r} (use fp16:keep=memory+tail)")
            out["keep"] = [k for k in p[5:].split("+") if k and k != "none"]
        return out
    if precision == "int8":
        out.update(target="cpu", method="minmax", float_last_convs=0)
        for p in parts[1:]:
            if p in ("cpu", "trt"):
                out["target"] = p
            elif p in ("minmax", "entropy", "percentile"):
                out["method"] = p
            elif p.startswith("head=") and p[5:].isdigit():
                out["float_last_convs"] = int(p[5:])
            else:
                raise ConfigError(f"bad INT8 variant {spec!r}")
        return out
    raise ConfigError(f"unknown variant {spec!r}; use fp32, fp16[:keep=...], int8[:cpu|trt][:method]")


def build_variants(
    ckpt,
    variants: Sequence[dict],
    out: Path,
    calib_data: Path,
    *,
    calib_clips: int = 256,
    threads: Optional[int] = None,
    report: Optional[Progress] = None,
) -> tuple[dict[str, Path], GraphSpec, dict]:
    """Export FP32 once, derive every variant's ONNX file; returns ({name: path}, graph, build info)."""
    import onnx

    from vadedge.calibration.int8 import ClipFeeds, Int8Options, quantize_int8
    from vadedge.export.fp16 import convert_to_fp16, precision_summary
    from vadedge.export.onnx_export import export_onnx

    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.fp32.onnx"
    t0 = time.time()
    info = export_onnx(ckpt.model, ckpt.state, fp32, batch=1)
    graph = info.graph_spec()
    state = {k: v.numpy() for k, v in ckpt.state.items()}
    built: dict[str, Path] = {}
    notes: dict = {"export_seconds": round(time.time() - t0, 1)}
    for v in variants:
        name = v["name"]
        path = out / f"model.{name.replace(':', '_').replace('=', '-').replace('+', '-')}.onnx"
        t0 = time.time()
        if v["precision"] == "fp32":
            path = fp32
        elif v["precision"] == "fp16":
            m16 = convert_to_fp16(onnx.load(str(fp32)), v["keep"])
            onnx.save(m16, str(path))
            notes[name] = {"nodes": precision_summary(m16)}
        else:
            opts = Int8Options.for_target(v["target"], max_clips=calib_clips, float_last_convs=v["float_last_convs"])
            reader = ClipFeeds(
                fp32,
                graph,
                ckpt.model.spec,
                ckpt.model.clip_length,
                state,
                calib_data,
                max_clips=calib_clips,
                threads=threads,
            )
            rep = quantize_int8(fp32, path, reader, method=v["method"], options=opts)
            notes[name] = {"clips": rep.clips, "quantized_tensors": rep.quantized_nodes}
        notes.setdefault(name, {})["build_seconds"] = round(time.time() - t0, 1)
        built[name] = path
        (report or Progress(logger, False)).info(f"built {name}: {path.name}")
    return built, graph, notes


def score_videos(stream, split, spec, state, progress: bool = False, desc: str = ""):
    """VideoScores of every video of a split through a `StreamRunner` (state carried per video)."""
    from vadedge.train.evaluate import VideoScores

    out = []
    for video in progress_bar(split.videos, total=len(split.videos), desc=desc, enabled=progress):
        frames = video.load(spec)
        comps = stream.score_frames(frames, state)
        first = stream.clip_length - 1
        labels = video.labels[first:] if video.labels is not None else None
        out.append(VideoScores(video.name, first, comps, labels))
    return out


def evaluate_variant(
    path: Path,
    graph: GraphSpec,
    model,
    state: dict,
    test,
    train,
    *,
    smoothing: float = 1.0,
    threads: Optional[int] = None,
    progress: bool = False,
    name: str = "",
) -> tuple[dict, list]:
    """Paper and streaming protocol results of one ONNX variant (same logic as vadedge.train.evaluate)."""
    from vadedge.runtime.runner import StreamRunner
    from vadedge.scoring import ema, fuse
    from vadedge.train.evaluate import calibrate, paper_scores, summarise

    stream = StreamRunner.for_model(path, graph, model.clip_length, state, threads=threads)
    signs, weights = model.score_components, model.score_weights
    t0 = time.time()
    videos = score_videos(stream, test, model.spec, state, progress, f"{name}: test videos")
    seconds = time.time() - t0
    bad = int(sum((~np.isfinite(c)).sum() for v in videos for c in v.components.values()))
    if bad:  # a broken variant (e.g. FP16 memory writes): report it instead of failing the whole run
        nan = {
            "auc": float("nan"),
            "macro_auc": float("nan"),
            "eer": float("nan"),
            "frames": int(sum(v.size for v in videos)),
            "non_finite_scores": bad,
        }
        return {"paper": nan, "streaming": dict(nan), "scoring_fps": 0.0}, videos
    res = {"paper": summarise(videos, paper_scores(videos, signs, weights))}
    stats = calibrate(score_videos(stream, train, model.spec, state, progress, f"{name}: calibration videos"))
    res["streaming"] = {
        **summarise(videos, [ema(fuse(v.components, signs, weights, stats), smoothing) for v in videos]),
        "smoothing": smoothing,
    }
    res["scoring_fps"] = sum(v.size for v in videos) / max(seconds, 1e-9)
    return res, videos


def agreement(ref: list, other: list) -> dict:
    """Max / mean absolute and relative differences of each component against the reference variant."""
    out = {}
    for comp in ref[0].components:
        a = np.concatenate([v.components[comp] for v in ref])
        b = np.concatenate([v.components[comp] for v in other])
        d = np.abs(a - b)
        out[comp] = {
            "max_abs": float(np.nanmax(d)) if np.isfinite(d).any() else float("nan"),
            "mean_abs": float(np.nanmean(d)) if np.isfinite(d).any() else float("nan"),
            "max_rel": float(np.nanmax(d / np.maximum(np.abs(a), 1e-12))) if np.isfinite(d).any() else float("nan"),
            "median_rel": float(np.nanmedian(d / np.maximum(np.abs(a), 1e-12)))
            if np.isfinite(d).any()
            else float("nan"),
            "non_finite": int((~np.isfinite(b)).sum()),
        }
    return out


def run(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    calib_data: Optional[str | Path] = None,
    calib_clips: int = 256,
    calib_videos: Optional[int] = None,
    smoothing: float = 1.0,
    rounds: int = 50,
    threads: Optional[int] = 1,
    progress: bool = True,
) -> dict:
    """Build, evaluate and time every variant; write results.json and results.md into `out`."""
    from vadedge.bench.timing import compare_latency, format_latency
    from vadedge.datasets import open_split
    from vadedge.train.checkpoint import load_checkpoint

    report = Progress(logger, progress)
    out = Path(out)
    specs = [parse_variant(v) for v in variants]
    ckpt = load_checkpoint(model_dir)
    test = open_split(data, "testing", require_labels=True)
    train = open_split(data, "training")
    if calib_videos:
        train.videos = train.videos[:calib_videos]
    paths, graph, notes = build_variants(
        ckpt, specs, out / "onnx", Path(calib_data or data), calib_clips=calib_clips, threads=threads, report=report
    )
    state = {k: v.numpy() for k, v in ckpt.state.items()}
    results: dict = {"model_dir": str(model_dir), "data": str(data), "variants": {}, "build": notes}
    ref_videos = None
    for v in specs:
        res, videos = evaluate_variant(
            paths[v["name"]],
            graph,
            ckpt.model,
            state,
            test,
            train,
            smoothing=smoothing,
            threads=threads,
            progress=progress,
            name=v["name"],
        )
        if ref_videos is None:
            ref_videos = videos
            ref_name = v["name"]
        else:
            res["agreement_vs_" + ref_name] = agreement(ref_videos, videos)
        results["variants"][v["name"]] = {**v, **res}
        report.info(
            f"{v['name']}: paper AUC {100 * res['paper']['auc']:.2f} %, streaming AUC "
            f"{100 * res['streaming']['auc']:.2f} %"
        )
    frames = test.videos[0].load(ckpt.model.spec)[: ckpt.model.clip_length][None]
    feeds = {graph.frames_input: np.ascontiguousarray(frames)}
    feeds.update({s.input: state[s.name][None] for s in graph.state})
    lat = compare_latency(dict(paths), feeds, rounds=rounds, threads=threads)
    results["latency"] = {"threads": threads, "rounds": rounds, "rows": [asdict(r) for r in lat]}
    results["machine"] = _machine()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    table = format_table(results) + "\n\n" + format_latency(lat)
    (out / "results.md").write_text(table + "\n")
    return results


def format_table(results: dict) -> str:
    rows = ["| variant | paper AUC | streaming AUC | paper EER | max abs Δ vs fp32 |", "|---|---|---|---|---|"]
    for name, r in results["variants"].items():
        agree = next((v for k, v in r.items() if k.startswith("agreement_vs_")), None)
        delta = ", ".join(f"{c} {d['max_abs']:.3g}" for c, d in agree.items()) if agree else "—"
        rows.append(
            f"| {name} | {100 * r['paper']['auc']:.2f} % | {100 * r['streaming']['auc']:.2f} % | "
            f"{100 * r['paper']['eer']:.2f} % | {delta} |"
        )
    return "\n".join(rows)


def _machine() -> dict:
    import os
    import platform

    import onnxruntime

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__}


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--data", required=True, help="dataset root with training/ and testing/ + labels")
    p.add_argument("--out", default=None, help="output folder (default MODEL_DIR/export-quality)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variants")
    p.add_argument("--calib-data", default=None, help="INT8 calibration footage (default: --data)")
    p.add_argument("--calib-clips", type=int, default=256)
    p.add_argument("--calib-videos", type=int, default=None, help="streaming protocol: first N training videos")
    p.add_argument("--smoothing", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=50, help="latency rounds (interleaved)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (1: CPU-time timing)")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    out = Path(a.out or Path(a.model_dir) / "export-quality")
    with console_logging(QUIET if a.quiet else DEFAULT):
        run(
            a.model_dir,
            a.data,
            out,
            variants=[v for v in a.variants.split(",") if v],
            calib_data=a.calib_data,
            calib_clips=a.calib_clips,
            calib_videos=a.calib_videos,
            smoothing=a.smoothing,
            rounds=a.rounds,
            threads=a.threads,
            progress=not a.quiet,
        )
    print((out / "results.md").read_text(), end="")


if __name__ == "__main__":
    main()
