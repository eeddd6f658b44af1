"""Printing, JSON and plots of a `run_bench` result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

# JSON schema of `vadedge bench --json` (checked by the tests with jsonschema)
_NUM = {"type": ["number", "null"]}
SCHEMA = {
    "type": "object",
    "required": ["schema_version", "machine", "model", "config", "rows", "sgemm", "ratios", "streams", "sizes"],
    "properties": {
        "schema_version": {"const": 1},
        "machine": {"type": "object", "required": ["cpus", "threads"]},
        "model": {"type": "object", "required": ["source", "kind"]},
        "config": {"type": "object"},
        "sgemm": {"type": ["object", "null"], "required": ["gflops", "library", "n", "by_library"]},
        "rows": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "backend",
                    "available",
                    "reason",
                    "latency_ms",
                    "fps",
                    "e2e_fps",
                    "e2e_ratio",
                    "gmac_per_frame",
                    "gflops",
                    "peak_share",
                    "rss_mb",
                ],
                "properties": {
                    "backend": {"type": "string", "pattern": "^(torch|ort-fp32|ort-fp16|ort-int8|trt)(\\+ab)?$"},
                    "available": {"type": "boolean"},
                    "reason": {"type": ["string", "null"]},
                    "latency_ms": {"type": ["object", "null"], "required": ["p50", "p95", "mean", "calls"]},
                    "fps": _NUM,
                    "e2e_fps": _NUM,
                    "e2e_ratio": _NUM,
                    "gmac_per_frame": _NUM,
                    "gflops": _NUM,
                    "peak_share": _NUM,
                    "rss_mb": _NUM,
                },
            },
        },
        "ratios": {"type": "object", "additionalProperties": {"type": "number"}},
        "streams": {"type": ["object", "null"]},
        "sizes": {"type": ["object", "null"]},
    },
}


def _f(x: Optional[float], fmt: str = "{:.1f}") -> str:
    return "—" if x is None else fmt.format(x)


def format_table(result: dict) -> str:
    """The main table (one line per requested backend, unavailable ones with their reason) and ratios."""
    m = result["model"]
    lines = []
    inp = m.get("input") or {}
    lines.append(
        f"model: {m['source']} — {m.get('family', '?')} {m.get('preset') or ''} "
        f"{inp.get('height', '?')}x{inp.get('width', '?')} {inp.get('color', '')}, "
        f"{_f(m.get('gmac_per_frame'), '{:.3f}')} GMAC/frame"
    )
    mach = result["machine"]
    lines.append(
        f"machine: {mach.get('cpu')} ({mach['cpus']} CPUs), {mach['threads']} threads, "
        f"onnxruntime {mach.get('onnxruntime')}"
    )
    if result.get("frames"):
        lines.append(f"frames: {result['frames']}; {result['config']['rounds']} interleaved rounds")
    sg = result.get("sgemm")
    if sg:
        by = ", ".join(f"{k} {v:.1f}" for k, v in sg["by_library"].items())
        lines.append(f"SGEMM peak: {sg['gflops']:.1f} GFLOP/s ({sg['library']}, n={sg['n']}; {by})")
    head = (
        f"{'backend':<12} {'p50 ms':>7} {'p95 ms':>7} {'FPS':>7} {'e2e FPS':>8} {'e2e/model':>9} "
        f"{'GMAC/f':>7} {'GFLOP/s':>8} {'% peak':>7} {'RSS MB':>7}"
    )
    lines += ["", head, "-" * len(head)]
    for r in result["rows"]:
        if not r["available"] or r["fps"] is None:
            lines.append(f"{r['backend']:<12} unavailable: {r['reason']}")
            continue
        lat = r["latency_ms"]
        lines.append(
            f"{r['backend']:<12} {lat['p50']:>7.2f} {lat['p95']:>7.2f} {r['fps']:>7.1f} "
            f"{_f(r['e2e_fps']):>8} {_f(r['e2e_ratio'] and 100 * r['e2e_ratio'], '{:.0f} %'):>9} "
            f"{_f(r['gmac_per_frame'], '{:.3f}'):>7} {_f(r['gflops']):>8} "
            f"{_f(r['peak_share'] and 100 * r['peak_share'], '{:.0f} %'):>7} {_f(r['rss_mb'], '{:.0f}'):>7}"
        )
    if result.get("import_vadedge_s") is not None:
        lines.append(f"import vadedge: {result['import_vadedge_s']:.3f} s (fresh interpreter, best of 3)")
    if result.get("ratios"):
        lines.append("")
        lines.append(
            "ratios (model-only FPS, same run): " + ", ".join(f"{k} {v:.2f}x" for k, v in result["ratios"].items())
        )
    st = result.get("streams")
    if st and st.get("fps"):
        lines += [
            "",
            f"throughput vs streams (frames/s, all streams; process_many, bundle batch {st['batch']}):",
            f"{'backend':<12} " + " ".join(f"{str(c) + ' str':>8}" for c in st["counts"]),
        ]
        for b, per in st["fps"].items():
            lines.append(f"{b:<12} " + " ".join(f"{per[str(c)]:>8.1f}" for c in st["counts"]))
    sz = result.get("sizes")
    if sz:
        lines.append("")
        if sz.get("error"):
            lines.append(f"throughput vs input size: {sz['error']}")
        else:
            lines.append(f"throughput vs input size ({sz['backend']}, {sz['family']}, random weights):")
            lines.append(f"{'size':<10} {'GMAC/f':>7} {'FPS':>7} {'p50 ms':>7} {'GFLOP/s':>8}")
            for r in sz["rows"]:
                lines.append(
                    f"{str(r['height']) + 'x' + str(r['width']):<10} {_f(r['gmac_per_frame'], '{:.3f}'):>7} "
                    f"{r['fps']:>7.1f} {r['p50_ms']:>7.2f} {_f(r['gflops']):>8}"
                )
    if result.get("plot"):
        lines.append(f"\nplot: {result['plot']}")
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    return path


def plot_scaling(result: dict, path: Path) -> Optional[Path]:
    """PNG: frames/s vs streams (left) and vs input pixels (right); matplotlib imported here only."""
    from .._optional import require

    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st, sz = result.get("streams"), result.get("sizes")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    if st and st.get("fps"):
        for b, per in st["fps"].items():
            ax.plot(st["counts"], [per[str(c)] for c in st["counts"]], "o-", label=b)
        ax.set_xscale("log", base=2)
        ax.set_xticks(st["counts"], [str(c) for c in st["counts"]])
        ax.legend()
    ax.set_xlabel("streams (one batched call per step)")
    ax.set_ylabel("frames / s (all streams)")
    ax.set_title("throughput vs streams")
    ax.grid(alpha=0.3)
    ax = axes[1]
    if sz and sz.get("rows"):
        px = [r["height"] * r["width"] for r in sz["rows"]]
        ax.plot(px, [r["fps"] for r in sz["rows"]], "o-", label=f"{sz['backend']} FPS")
        for r, p in zip(sz["rows"], px):
            ax.annotate(f"{r['height']}x{r['width']}", (p, r["fps"]), textcoords="offset points", xytext=(4, 4))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("input pixels (H x W)")
    ax.set_ylabel("frames / s (model only, 1 stream)")
    ax.set_title("throughput vs input size")
    ax.grid(alpha=0.3)
    m = result["model"]
    fig.suptitle(
        f"{m.get('family')} {m.get('preset') or ''} — {result['machine'].get('cpu')}, "
        f"{result['machine']['threads']} threads",
        fontsize=9,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
