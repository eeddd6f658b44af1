"""`run_bench`: every requested backend measured in one run, on the same frames, interleaved round by round.

Order of work: resolve the model → prepare each row (export / convert / quantise what the bundle
lacks; unavailable rows keep their reason) → load every Detector → SGEMM peak → R rounds, each
running every row's model-only pass and then every row's end-to-end pass (so load changes hit all
rows alike) → SGEMM peak again (the higher of the two is the peak) → resident memory per row in a
fresh interpreter → optional throughput vs streams and vs input size. Returns a JSON-able dict
(schema in `vadedge.bench.report.SCHEMA`).
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import ConfigError
from ..progress import Progress
from . import measure
from .gmac import bundle_gmac
from .peak import achieved_gflops, measure_peak, peak_share
from .variants import ModelSource, Row, parse_backends, prepare_rows, resolve_source

if TYPE_CHECKING:
    from ..runtime import Detector
    from .peak import PeakResult

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass
class BenchConfig:
    """Options of one benchmark run (the CLI's flags)."""

    model: Optional[str] = None
    preset: Optional[str] = None
    backends: Sequence[str] = ("torch", "ort-fp32", "ort-int8", "trt")
    frames: int = 200
    rounds: int = 3
    threads: Optional[int] = None
    streams: int = 8
    stream_steps: int = 40
    sizes: Sequence[tuple[int, int]] = ()
    data: Optional[str] = None
    calib_data: Optional[str] = None
    calib_clips: int = 64
    fp16: Optional[str] = None
    int8: Optional[str] = None
    engine: Optional[str] = None
    workdir: Optional[str] = None
    rss_frames: int = 300
    sgemm_n: int = 2048
    plot: Optional[str] = None
    settle: float = 0.2  # untimed pause before each block / pass so the previous row's spinning threads park
    ab: Optional[dict] = None  # extra ORT session config entries: each ORT row gets a '+ab' twin

    def check(self) -> None:
        """Reject bad values before any work (ConfigError: the CLI exits 2)."""
        self.backends = parse_backends(self.backends)
        for name in ("frames", "rounds", "stream_steps", "calib_clips", "sgemm_n"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.settle < 0:
            raise ConfigError(f"settle must be >= 0, got {self.settle}")
        if self.streams < 0 or self.rss_frames < 0:
            raise ConfigError("streams and rss-frames must be >= 0")


def stream_counts(max_streams: int) -> list[int]:
    """1, 2, 4, … up to `max_streams` (and `max_streams` itself); [] for 0."""
    out, s = [], 1
    while s <= max_streams:
        out.append(s)
        s *= 2
    if max_streams >= 1 and out[-1] != max_streams:
        out.append(max_streams)
    return out


def parse_sizes(text: Optional[str]) -> list[tuple[int, int]]:
    """'64x96,128x192' → [(64, 96), (128, 192)]; '' / None / 'none' → []."""
    if not text or text.strip().lower() == "none":
        return []
    out = []
    for item in text.split(","):
        h, sep, w = item.strip().lower().partition("x")
        if not sep or not h.isdigit() or not w.isdigit() or int(h) % 8 or int(w) % 8 or int(h) < 8 or int(w) < 8:
            raise ConfigError(f"bad size {item!r} in --sizes: use HxW with multiples of 8, e.g. 64x96,128x192")
        out.append((int(h), int(w)))
    return out


def machine_info(threads: Optional[int]) -> dict:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "threads": threads,
        "cpu": platform.processor() or None,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["isa"] = sorted(f for f in flags if f.startswith(("avx512", "avx2", "fma", "amx", "avx_vnni")))
                break
    except OSError:
        pass
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
    except ImportError:
        info["onnxruntime"] = None
    info["numpy"] = np.__version__
    return info


def run_bench(cfg: BenchConfig, progress: bool = True) -> dict:
    """Measure every row of `cfg.backends` side by side; see the module docstring for the order of work.

    Step messages go to the `vadedge.bench` logger (INFO with `progress`, else DEBUG; `vadedge.progress`)."""
    cfg.check()
    report = Progress(logger, progress)
    threads = cfg.threads or os.cpu_count() or 1
    workdir = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="vadedge-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source = resolve_source(cfg.model, cfg.preset, workdir, report)
    rows, variant_dir = _prepare_rows(cfg, source, workdir, report)
    dets = _load_rows(rows, threads)
    result: dict = {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(threads),
        "model": _model_info(source, dets),
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("workdir",)},
        "workdir": str(workdir),
    }
    first = next(iter(dets.values()), None)
    if first is None:
        result["rows"] = [_row_dict(r, None) for r in rows]
        result.update(sgemm=None, ratios={}, streams=None, sizes=None)
        return result
    raw, result["frames"] = measure.load_frames(_p(cfg.data), cfg.frames + first.clip_length - 1)
    gmac = bundle_gmac(variant_dir) if variant_dir is not None else None
    result["model"]["gmac_per_frame"] = gmac
    timed = _timed_rounds(cfg, dets, raw, result["frames"], workdir, threads, report)
    result["sgemm"] = {**timed.peak.to_dict(), "runs_gflops": [round(p.gflops, 2) for p in timed.peaks]}
    result["rows"] = _result_rows(rows, timed, gmac)
    result["ratios"] = _ratios(result["rows"])
    result["import_vadedge_s"] = round(measure.import_seconds(), 4)
    if cfg.rss_frames:
        report.info("resident memory per backend (fresh interpreters) ...")
        for row, d in zip(rows, result["rows"]):
            if row.backend in dets:
                d["rss"] = _rss(row, source, variant_dir, cfg.rss_frames, threads)
                d["rss_mb"] = d["rss"].get("rss_end_mb")
    for det in dets.values():
        det.close()
    result.update(_scaling_tables(cfg, rows, dets, source, variant_dir, raw, workdir, threads, report))
    if cfg.plot and (result["streams"] or result["sizes"]):
        from .report import plot_scaling

        result["plot"] = str(plot_scaling(result, Path(cfg.plot)))
    return result


@dataclass
class _Timed:
    """What the interleaved rounds measured, per row name (plus the SGEMM peaks before and after)."""

    calls: dict[str, list[float]]  # seconds of every model-only call
    round_fps: dict[str, list[float]]  # model-only throughput of each round
    e2e: dict[str, list[dict]]  # one end-to-end pass per round
    peaks: list[PeakResult]  # before and after the rounds

    @property
    def peak(self) -> PeakResult:
        return max(self.peaks, key=lambda p: p.gflops)


def _prepare_rows(
    cfg: BenchConfig, source: ModelSource, workdir: Path, report: Progress
) -> tuple[list[Row], Optional[Path]]:
    """Every requested row, with the derived models it needs (and the '+ab' twins of `--ab`)."""
    rows, variant_dir = prepare_rows(
        list(cfg.backends),
        source,
        workdir,
        fp16=_p(cfg.fp16),
        int8=_p(cfg.int8),
        engine=_p(cfg.engine),
        calib_data=_p(cfg.calib_data),
        calib_clips=cfg.calib_clips,
        report=report,
    )
    if cfg.ab:
        from .variants import add_ab_rows

        rows = add_ab_rows(rows, cfg.ab)
    return rows, variant_dir


def _load_rows(rows: list[Row], threads: int) -> dict[str, Detector]:
    """{row name: Detector} of every available row; a row that fails to load keeps the reason."""
    dets: dict[str, Detector] = {}
    for row in rows:
        if row.available:
            try:
                if row.load is None:
                    raise RuntimeError("the row has no loader")
                dets[row.backend] = row.load(threads)
            except Exception as exc:  # noqa: BLE001 - reported in the row
                row.reason = f"failed to load: {type(exc).__name__}: {exc}"
    return dets


def _timed_rounds(
    cfg: BenchConfig,
    dets: dict[str, Detector],
    raw: list[np.ndarray],
    frames_label: str,
    workdir: Path,
    threads: int,
    report: Progress,
) -> _Timed:
    """SGEMM peak → warm-up → R rounds (model-only blocks, then end-to-end passes) → SGEMM peak again."""
    import zlib

    first = next(iter(dets.values()))
    clips = measure.clips_of(raw, first.spec, first.clip_length)
    video = measure.write_video(raw, workdir / f"bench-{len(raw)}-{zlib.crc32(frames_label.encode())}.mp4")
    report.info(f"SGEMM peak ({threads} threads) ...")
    peaks = [measure_peak(threads, cfg.sgemm_n)]
    time.sleep(cfg.settle)
    for det in dets.values():  # warm-up: first-call allocations and kernel selection stay out of the rounds
        measure.model_only(det, clips[: min(5, len(clips))])
    timed = _Timed({k: [] for k in dets}, {k: [] for k in dets}, {k: [] for k in dets}, peaks)
    names = list(dets)
    for r in range(cfg.rounds):
        report.info(
            f"round {r + 1}/{cfg.rounds}: model-only (interleaved in blocks of 25 calls) and end-to-end passes ..."
        )
        for name, times in measure.model_only_interleaved(dets, clips, settle=cfg.settle).items():
            timed.calls[name].extend(times)
            timed.round_fps[name].append(len(times) / sum(times))
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who runs first
        for name in order:
            time.sleep(cfg.settle)
            timed.e2e[name].append(measure.end_to_end(dets[name], video))
    time.sleep(cfg.settle)
    peaks.append(measure_peak(threads, cfg.sgemm_n))
    return timed


def _result_rows(rows: list[Row], timed: _Timed, gmac: Optional[float]) -> list[dict]:
    """One result dict per row: its availability, and the statistics of the measured ones."""
    out = []
    for row in rows:
        d = _row_dict(row, gmac)
        if row.backend in timed.calls:
            d.update(
                _stats(
                    timed.calls[row.backend],
                    timed.round_fps[row.backend],
                    timed.e2e[row.backend],
                    gmac,
                    timed.peak.gflops,
                )
            )
        out.append(d)
    return out


def _scaling_tables(
    cfg: BenchConfig,
    rows: list[Row],
    dets: dict[str, Detector],
    source: ModelSource,
    variant_dir: Optional[Path],
    raw: list[np.ndarray],
    workdir: Path,
    threads: int,
    report: Progress,
) -> dict:
    """{"streams": throughput vs streams of the ORT rows, "sizes": throughput vs input size} (None = skipped)."""
    from .scaling import sizes_table, streams_table

    out: dict = {"streams": None, "sizes": None}
    ort_rows = [r.backend for r in rows if r.backend in ("ort-fp32", "ort-fp16", "ort-int8") and r.backend in dets]
    if cfg.streams and ort_rows and variant_dir is not None:
        report.info("throughput vs streams ...")
        out["streams"] = streams_table(
            variant_dir, ort_rows, raw, stream_counts(cfg.streams), cfg.stream_steps, cfg.rounds, threads
        )
    if cfg.sizes:
        report.info("throughput vs input size ...")
        out["sizes"] = sizes_table(source, cfg.sizes, workdir, raw, cfg.rounds, threads, report)
    return out


def _p(x: Optional[str]) -> Optional[Path]:
    return Path(x) if x else None


def _model_info(source: ModelSource, dets: dict[str, Detector]) -> dict:
    info: dict[str, Any] = {
        "source": source.label,
        "kind": source.kind,
        "checkpoint": str(source.checkpoint) if source.checkpoint else None,
    }
    det = next(iter(dets.values()), None)
    if det is not None:
        m = det.bundle.manifest
        info.update(family=m.family, preset=m.preset, input=m.input.to_dict(), batch=m.graph.batch)
    return info


def _row_dict(row: Row, gmac: Optional[float]) -> dict:
    return {
        "backend": row.backend,
        "available": row.available,
        "reason": row.reason,
        "detail": row.detail,
        "gmac_per_frame": gmac,
        "latency_ms": None,
        "fps": None,
        "e2e_fps": None,
        "e2e_ratio": None,
        "gflops": None,
        "peak_share": None,
        "rss_mb": None,
    }


def _stats(calls: list[float], round_fps: list[float], e2e: list[dict], gmac: Optional[float], peak: float) -> dict:
    """FPS = median over rounds of each round's throughput (robust to a burst of load in one round)."""
    ms = [c * 1e3 for c in calls]
    fps = float(np.median(round_fps))
    e2e_fps = float(np.median([e["scored"] / e["seconds"] for e in e2e]))
    out = {
        "latency_ms": {
            "p50": round(measure.percentile(ms, 50), 3),
            "p95": round(measure.percentile(ms, 95), 3),
            "mean": round(float(np.mean(ms)), 3),
            "calls": len(ms),
        },
        "fps": round(fps, 2),
        "fps_rounds": [round(f, 2) for f in round_fps],
        "e2e_fps": round(e2e_fps, 2),
        "e2e_ratio": round(e2e_fps / fps, 4),
        "e2e_runs": e2e,
    }
    if gmac:
        g = achieved_gflops(gmac, fps)
        out.update(gflops=round(g, 2), peak_share=round(peak_share(g, peak), 4))
    return out


def _ratios(rows: list[dict]) -> dict:
    fps = {r["backend"]: r["fps"] for r in rows if r["fps"]}
    out = {}
    for a, b in (("ort-fp32", "torch"), ("ort-int8", "ort-fp32"), ("ort-fp16", "ort-fp32"), ("ort-int8", "torch")):
        if a in fps and b in fps:
            out[f"{a}/{b}"] = round(fps[a] / fps[b], 3)
    for name in fps:
        if name.endswith("+ab") and name[:-3] in fps:
            out[f"{name}/{name[:-3]}"] = round(fps[name] / fps[name[:-3]], 3)
    e2e = {r["backend"]: r["e2e_fps"] for r in rows if r.get("e2e_fps")}
    for name in e2e:
        if name.endswith("+ab") and name[:-3] in e2e:
            out[f"{name}/{name[:-3]} e2e"] = round(e2e[name] / e2e[name[:-3]], 3)
    return out


def _rss(row: Row, source: ModelSource, variant_dir: Optional[Path], frames: int, threads: int) -> dict:
    if row.backend.endswith("+ab"):
        return {"note": "same model as the row above; not measured separately"}
    model = source.checkpoint if row.backend == "torch" else variant_dir
    if model is None:
        return {"note": "no model files for this row"}
    if row.backend == "torch":
        return measure.measure_rss(model, "torch", None, frames, threads)
    if row.backend == "trt":
        return measure.measure_rss(model, "tensorrt", None, frames, threads)
    return measure.measure_rss(model, "onnxruntime", row.backend.split("-")[1], frames, threads)
