"""`vadedge bench`: every backend side by side on the same frames — latency, FPS, GMAC, % of SGEMM peak, e2e, RSS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options


@click.command("bench")
@click.option(
    "--model",
    "-m",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="Bundle folder or checkpoint folder (default: the bundle shipped with vadedge).",
)
@click.option(
    "--preset",
    default=None,
    metavar="MODEL:PRESET",
    help="Benchmark a registered family at a preset with random weights, e.g. mnad-pred:edge-s.",
)
@click.option(
    "--backends",
    default="torch,ort-fp32,ort-int8,trt",
    show_default=True,
    help="Comma list of torch, ort-fp32, ort-fp16, ort-int8, trt. Unavailable ones are listed with the reason.",
)
@click.option("--frames", type=int, default=200, show_default=True, help="Scored frames per pass.")
@click.option(
    "--rounds",
    type=int,
    default=3,
    show_default=True,
    help="Interleaved rounds (each runs every backend once, model-only then end-to-end).",
)
@click.option("--threads", type=int, default=None, help="CPU threads for inference and SGEMM (default: all CPUs).")
@click.option(
    "--streams",
    type=int,
    default=8,
    show_default=True,
    help="Throughput vs streams sweep over 1, 2, 4, … up to N streams (0 = skip).",
)
@click.option("--stream-steps", type=int, default=40, show_default=True, help="Frames per stream in the sweep.")
@click.option(
    "--sizes",
    default=None,
    metavar="HxW,…",
    help="Throughput vs input size: re-export the family at these sizes (needs torch), e.g. 64x96,128x192,256x384.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Frames to run: a video file, a frames folder or a dataset root (its first test video). "
    "Default: synthetic 240x360 frames.",
)
@click.option(
    "--calib-data",
    type=click.Path(path_type=Path),
    default=None,
    help="Normal footage for an INT8 model derived on the fly (default: the checkpoint's training "
    "data, else synthetic frames).",
)
@click.option("--calib-clips", type=int, default=64, show_default=True, help="Clips for INT8 calibration.")
@click.option(
    "--fp16",
    "fp16",
    type=click.Path(path_type=Path),
    default=None,
    help="FP16 model to use (a bundle or .onnx) instead of converting.",
)
@click.option(
    "--int8",
    "int8",
    type=click.Path(path_type=Path),
    default=None,
    help="INT8 model to use (a bundle or .onnx) instead of quantising.",
)
@click.option("--engine", type=click.Path(path_type=Path), default=None, help="TensorRT engine for the trt row.")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep derived models here and reuse them next time (default: a temporary folder).",
)
@click.option(
    "--rss-frames",
    type=int,
    default=300,
    show_default=True,
    help="Frames run in a fresh interpreter per backend to read its resident memory (0 = skip).",
)
@click.option("--sgemm-n", type=int, default=2048, show_default=True, help="Matrix size of the SGEMM peak test.")
@click.option(
    "--ab",
    default=None,
    metavar="KEY=VAL,…",
    help="A/B test ONNX Runtime session config entries: each ORT row gets a '+ab' twin with them, "
    "measured in the same interleaved rounds (e.g. session.intra_op.allow_spinning=0).",
)
@click.option(
    "--settle",
    type=float,
    default=0.2,
    show_default=True,
    help="Untimed pause (s) before each measured block, so the previous row's spinning threads park.",
)
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the full result as JSON."
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="PNG of throughput vs streams and vs input size (needs matplotlib).",
)
@verbosity_options
@user_errors
def bench_cmd(
    model: Optional[Path],
    preset: Optional[str],
    backends: str,
    frames: int,
    rounds: int,
    threads: Optional[int],
    streams: int,
    stream_steps: int,
    sizes: Optional[str],
    data: Optional[Path],
    calib_data: Optional[Path],
    calib_clips: int,
    fp16: Optional[Path],
    int8: Optional[Path],
    engine: Optional[Path],
    workdir: Optional[Path],
    rss_frames: int,
    sgemm_n: int,
    settle: float,
    ab: Optional[str],
    json_out: Optional[Path],
    plot: Optional[Path],
    quiet: bool,
) -> None:
    """Measure every backend side by side on the same frames.

    \b
    One table, all rows from the same run, interleaved round by round: latency p50/p95 and FPS
    of the model call (batch 1, state carried), GMAC per frame, achieved GFLOP/s and its share of
    this machine's SGEMM peak (measured in the same run, same threads), end-to-end FPS of the
    `vadedge run` loop on a video file (decode + preprocess + inference + scoring) against the
    model-only FPS, and resident memory (a fresh interpreter per backend).
    \b
    Examples:
      vadedge bench                                        # the shipped model
      vadedge bench --model runs/ckpt --backends torch,ort-fp32,ort-int8 --json bench.json
      vadedge bench --preset mnad-pred:edge-s --sizes 64x96,128x192,256x384 --plot scaling.png
    """
    from vadedge.bench import BenchConfig, format_table, parse_sizes, run_bench, write_json
    from vadedge.bench.variants import parse_session_config

    cfg = BenchConfig(
        model=str(model) if model else None,
        preset=preset,
        backends=backends,
        frames=frames,
        rounds=rounds,
        threads=threads,
        streams=streams,
        stream_steps=stream_steps,
        sizes=parse_sizes(sizes),
        data=str(data) if data else None,
        calib_data=str(calib_data) if calib_data else None,
        calib_clips=calib_clips,
        fp16=str(fp16) if fp16 else None,
        int8=str(int8) if int8 else None,
        engine=str(engine) if engine else None,
        workdir=str(workdir) if workdir else None,
        rss_frames=rss_frames,
        sgemm_n=sgemm_n,
        ab=parse_session_config(ab) or None,
        settle=settle,
        plot=str(plot) if plot else None,
    )
    cfg.check()  # bad values exit 2 before any work
    result = run_bench(cfg, progress=not quiet)
    click.echo(format_table(result))
    if json_out:
        write_json(result, json_out)
        if not quiet:
            click.echo(f"json: {json_out}", err=True)
    if not any(r["available"] for r in result["rows"]):
        click.echo("no requested backend is available here", err=True)
        sys.exit(1)


command = bench_cmd
