"""Throughput vs number of streams (one batched call per step) and vs input size (the same family re-exported)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..progress import Progress
from . import measure
from .gmac import bundle_gmac
from .variants import PRECISION, ModelSource


def streams_table(
    variant_dir: Path,
    backends: Sequence[str],
    frames: Sequence[np.ndarray],
    counts: Sequence[int],
    steps: int,
    rounds: int,
    threads: int,
) -> dict:
    """Frames/s of every ORT row at each stream count, interleaved (round → backend → count)."""
    from ..runtime import Detector

    dets = {
        b: Detector.load(
            variant_dir, backend="onnxruntime", device="cpu", precision=PRECISION[b], threads=threads, heatmap=False
        )
        for b in backends
    }
    batch = next(iter(dets.values())).backend.batch
    fps: dict[str, dict[int, list[float]]] = {b: {s: [] for s in counts} for b in dets}
    for _ in range(rounds):
        for b, det in dets.items():
            for s in counts:
                fps[b][s].append(measure.streams_pass(det, frames, s, steps))
    for det in dets.values():
        det.close()
    return {
        "counts": list(counts),
        "steps": steps,
        "batch": "dynamic" if batch is None else batch,
        "fps": {b: {str(s): round(float(np.median(v)), 2) for s, v in per.items()} for b, per in fps.items()},
    }


def sizes_table(
    source: ModelSource,
    sizes: Sequence[tuple[int, int]],
    workdir: Path,
    frames: Sequence[np.ndarray],
    rounds: int,
    threads: int,
    report: Progress,
) -> dict:
    """Model-only FPS and GMAC of the ORT FP32 graph of the same family at each input size (random weights)."""
    import importlib.util

    if source.checkpoint is None or importlib.util.find_spec("torch") is None:
        return {"error": "needs the model's checkpoint (or --preset) and torch to re-export at other sizes"}
    from ..export import export_bundle
    from ..runtime import Detector

    cfg = json.loads((Path(source.checkpoint) / "config.json").read_text())
    bundles = {}
    for h, w in sizes:
        out = workdir / f"size-{h}x{w}"
        if not (out / "vadedge.json").is_file():
            report.info(f"exporting {cfg['name']} at {h}x{w} ...")
            ckpt = _size_checkpoint(cfg, h, w, workdir / f"size-{h}x{w}-ckpt")
            export_bundle(ckpt, out, batch="dynamic", score_data=False, progress=False)
        bundles[(h, w)] = out
    dets = {hw: Detector.load(p, backend="onnxruntime", device="cpu", threads=threads) for hw, p in bundles.items()}
    clips = {hw: measure.clips_of(frames, d.spec, d.clip_length) for hw, d in dets.items()}
    for hw, d in dets.items():
        measure.model_only(d, clips[hw][:3])
    times: dict = {hw: [] for hw in dets}
    for _ in range(rounds):
        for hw, d in dets.items():
            times[hw].extend(measure.model_only(d, clips[hw]))
    rows = []
    for hw, d in dets.items():
        gmac = bundle_gmac(bundles[hw])
        fps = len(times[hw]) / sum(times[hw])
        rows.append(
            {
                "height": hw[0],
                "width": hw[1],
                "gmac_per_frame": gmac,
                "fps": round(fps, 2),
                "p50_ms": round(measure.percentile([t * 1e3 for t in times[hw]], 50), 3),
                "gflops": round(2 * gmac * fps, 2) if gmac else None,
            }
        )
        d.close()
    return {"backend": "ort-fp32", "family": cfg["name"], "preset": cfg.get("preset"), "rows": rows}


def _size_checkpoint(cfg: dict, h: int, w: int, out: Path) -> Path:
    import torch

    from ..train.checkpoint import save_checkpoint
    from ..train.registry import get_model_entry

    if (out / "config.json").is_file():
        return out
    model_cfg = {**cfg["model"], "height": h, "width": w}
    torch.manual_seed(0)
    model = get_model_entry(cfg["name"]).build(model_cfg).eval()
    save_checkpoint(
        out,
        model,
        model.initial_state(),
        {
            "name": cfg["name"],
            "preset": cfg.get("preset"),
            "model": model_cfg,
            "train": cfg.get("train", {}),
            "data": None,
            "seed": 0,
        },
    )
    return out
