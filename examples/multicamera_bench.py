"""Four cameras: one `vadedge run --config` process vs four `vadedge run` processes (docs/benchmarks.md).

    nice -n 5 python examples/multicamera_bench.py                      # the shipped bundle
    nice -n 5 python examples/multicamera_bench.py --bundle BUNDLE --cameras 4 --frames 200 --repeats 3

Writes CAMERAS generated videos (FRAMES frames each at 10 fps) to a temp folder, then, in one run,
times each mode from start to the last process's exit, every frame scored (`--all-frames`; file
sources are decoded as fast as they can be): one process running every camera of a config file
(cameras that share a bundle share one Detector, batched through `process_many`) with the given
intra-op thread counts, and one `vadedge run` process per camera with --threads 1. Repeats
rotate the order of the modes; the table gives the median wall time and aggregate frames/s
(CAMERAS x FRAMES / wall). Start-up (imports, model load) is inside the wall time, as a user pays it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import yaml

from vadedge.synthetic import SceneGenerator, write_video


def vadedge_cmd() -> list[str]:
    """The `vadedge` console script of this interpreter (or PATH's)."""
    exe = Path(sys.executable).with_name("vadedge")
    return [str(exe)] if exe.exists() else [shutil.which("vadedge") or "vadedge"]


def write_videos(folder: Path, cameras: int, frames: int, height: int, width: int) -> list[Path]:
    gen = SceneGenerator(height, width, seed=0)
    out = []
    for i in range(cameras):
        clip, _ = gen.render(frames, seed=100 + i)
        out.append(write_video(folder / f"cam{i}.avi", clip, fps=10))
    return out


def config_text(videos: list[Path], bundle: Optional[str], threads: int, state_dir: Path) -> str:
    """A `vadedge run --config` file: one camera per video, all on the same bundle and threads."""
    cams = []
    for i, v in enumerate(videos):
        cam = {"name": f"cam{i}", "source": str(v), "all_frames": True, "threads": threads}
        if bundle is not None:
            cam["bundle"] = bundle
        cams.append(cam)
    return yaml.safe_dump({"cameras": cams, "state_dir": str(state_dir)}, sort_keys=False)


def mode_commands(mode: str, videos: list[Path], bundle: Optional[str], folder: Path) -> list[list[str]]:
    """The commands one mode starts together: `one:T` (one process, T threads) or `four` (one each)."""
    base = vadedge_cmd()
    if mode == "four":
        model = ["--model", bundle] if bundle is not None else []
        return [[*base, "run", str(v), "--all-frames", "--threads", "1", "-q", *model] for v in videos]
    threads = int(mode.split(":")[1])
    cfg = folder / f"cameras-t{threads}.yaml"
    cfg.write_text(config_text(videos, bundle, threads, folder / "state"))
    return [[*base, "run", "--config", str(cfg), "-q"]]


def time_commands(cmds: list[list[str]]) -> float:
    """Start every command at once; seconds until the last has exited (a failure raises)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in cmds]
    for p, c in zip(procs, cmds):
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(c)} exited {p.returncode}: {err.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - t0


def rotations(modes: list[str], repeats: int) -> list[list[str]]:
    """Repeat r runs the modes starting from mode r % len(modes), so no mode is always first."""
    return [modes[r % len(modes) :] + modes[: r % len(modes)] for r in range(repeats)]


def label(mode: str, cameras: int) -> str:
    if mode == "four":
        return f"{cameras} processes x 1 thread"
    t = mode.split(":")[1]
    return f"1 process x {t} thread{'s' if t != '1' else ''} (shared Detector)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the model shipped with vadedge)")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--frames", type=int, default=200, help="frames per camera")
    ap.add_argument("--size", default="240x360", help="video HEIGHTxWIDTH")
    ap.add_argument("--threads", default="1,2", help="intra-op threads of the one-process runs, e.g. 1,2,4")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    h, w = (int(x) for x in args.size.lower().split("x"))
    modes = [f"one:{t}" for t in args.threads.split(",") if t] + ["four"]
    walls: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        videos = write_videos(folder, args.cameras, args.frames, h, w)
        cmds = {m: mode_commands(m, videos, args.bundle, folder) for m in modes}
        for order in rotations(modes, args.repeats):
            for m in order:
                walls[m].append(time_commands(cmds[m]))
                print(f"{m:6s} {walls[m][-1]:7.2f} s", file=sys.stderr, flush=True)
    total = args.cameras * args.frames
    print(f"\n{args.cameras} cameras x {args.frames} frames ({h}x{w}), median of {args.repeats} runs\n")
    print("| mode | wall s (median) | all runs s | frames/s (aggregate) |")
    print("|---|---|---|---|")
    for m in modes:
        med = statistics.median(walls[m])
        runs = ", ".join(f"{x:.2f}" for x in walls[m])
        print(f"| {label(m, args.cameras)} | {med:.2f} | {runs} | {total / med:.1f} |")


if __name__ == "__main__":
    main()
