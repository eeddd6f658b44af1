"""Where the time goes inside one ONNX Runtime model: per-op-type kernel time from ORT's profiler.

    python -m vadedge.bench.profile BUNDLE [--precision int8] [--calls 100] [--threads 2] [--top 12]

Runs `--calls` calls (batch 1, state carried) on synthetic frames with `enable_profiling`, then sums
the kernel time of every node by op type (and lists the slowest single nodes). Kernel times add up
to less than the call's wall time; the difference (session overhead, I/O copies, thread hand-offs)
is printed as "outside kernels".
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Optional


def profile_bundle(
    bundle: Path, precision: str = "fp32", calls: int = 100, threads: Optional[int] = None, warmup: int = 10
) -> dict:
    """{"ops": {op_type: ms per call}, "nodes": [(name, op_type, ms per call)], "wall_ms": per call, ...}."""
    from ..bundle import load_bundle
    from ..runtime.backends.onnxruntime import OnnxRuntimeBackend
    from ..runtime.runner import StreamRunner, side_providers
    from .measure import ModelOnly, clips_of, synthetic_frames

    b = load_bundle(bundle)
    tmp = tempfile.mkdtemp(prefix="vadedge-profile-")
    backend = OnnxRuntimeBackend.for_model(
        b.model_file(precision),
        b.manifest.graph,
        precision=precision,
        threads=threads,
        profile_prefix=str(Path(tmp) / "ort"),
    )
    runner = StreamRunner(backend, b.state, b.clip_length, side_providers(b.manifest.graph, f"bundle {b.path}"))
    clips = clips_of(synthetic_frames(warmup + calls + b.clip_length), b.input_spec, b.clip_length)
    model = ModelOnly(runner)
    for clip in clips[:warmup]:  # first-call allocations stay out of the wall time (not out of the trace)
        model.call(clip)
    t_sum = sum(model.call(clip) for clip in clips[warmup : warmup + calls])
    trace = json.loads(Path(backend.session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    per_node: dict[tuple[str, str], float] = defaultdict(float)
    n_runs = 0
    for ev in trace:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            n_runs += 1
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        op = ev.get("args", {}).get("op_name", "?")
        per_op[op] += ev["dur"]
        per_node[(ev["name"][: -len("_kernel_time")], op)] += ev["dur"]
    runs = max(n_runs, 1)
    ops = {k: v / runs / 1e3 for k, v in sorted(per_op.items(), key=lambda kv: -kv[1])}
    nodes = sorted(((n, op, v / runs / 1e3) for (n, op), v in per_node.items()), key=lambda x: -x[2])
    return {
        "precision": precision,
        "threads": threads,
        "calls": calls,
        "runs_profiled": n_runs,
        "wall_ms": t_sum / calls * 1e3,
        "kernel_ms": sum(ops.values()),
        "ops": ops,
        "nodes": nodes,
    }


def format_profile(p: dict, top: int = 12) -> str:
    lines = [
        f"{p['precision']}: {p['wall_ms']:.2f} ms per call (wall, profiling on), kernels {p['kernel_ms']:.2f} ms, "
        f"outside kernels {p['wall_ms'] - p['kernel_ms']:.2f} ms"
    ]
    for op, ms in list(p["ops"].items())[:top]:
        lines.append(f"  {op:<24} {ms:8.3f} ms  {100 * ms / p['kernel_ms']:5.1f} %")
    lines.append("  slowest nodes:")
    for name, op, ms in p["nodes"][:top]:
        lines.append(f"    {name[:48]:<48} {op:<18} {ms:7.3f} ms")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--precision", default="fp32", help="comma list, e.g. fp32,int8")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results = []
    for prec in args.precision.split(","):
        p = profile_bundle(args.bundle, prec, args.calls, args.threads)
        results.append(p)
        print(format_profile(p, args.top), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
