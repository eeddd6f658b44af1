"""`vadedge eval`: frame-level AUC / EER under the paper and streaming protocols, false alarms and delay."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange


@click.command("eval")
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Checkpoint folder written by `vadedge train`, or a bundle folder written by `vadedge export`.",
)
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset root with testing/frames/<video>/ and labels.json (or frame_labels_*.npy).",
)
@click.option(
    "--protocol",
    type=click.Choice(["paper", "streaming", "both"]),
    default="both",
    show_default=True,
    help="paper: per-video min-max (offline, as the papers); streaming: causal, the Detector's score at "
    "the operating point.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for results.json, scores.csv, roc.png and per-video score plots (default: MODEL/eval for a "
    "checkpoint, ./eval-NAME for a bundle folder NAME).",
)
@click.option(
    "--smoothing",
    type=FiniteFloatRange(0, 1, min_open=True),
    default=None,
    help="Streaming protocol: causal EMA factor (1 = no smoothing). Default: the operating point's "
    "(a bundle's `smoothing`; 0.3 for a checkpoint, as `vadedge export` ships).",
)
@click.option(
    "--calib-videos",
    type=click.IntRange(min=1),
    default=None,
    help="Streaming protocol, checkpoints: calibrate on only the first N training videos.",
)
@click.option(
    "--fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Frame rate of the test footage (UCSD Ped1/Ped2: 10), for false alarms per hour and delays in seconds.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]),
    default="auto",
    show_default=True,
    help="Detector backend (a checkpoint always runs on torch).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (torch / ONNX Runtime).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option(
    "--adapt-k",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Few-shot models (MPN): adapt each video on its first K clips, score the rest.",
)
@verbosity_options
@user_errors
def eval_cmd(
    model_dir: Path,
    data: Path,
    protocol: str,
    out: Optional[Path],
    smoothing: Optional[float],
    calib_videos: Optional[int],
    fps: float,
    backend: str,
    threads: Optional[int],
    no_plots: bool,
    quiet: bool,
    adapt_k: int,
) -> None:
    """Score DATA/testing in stream order through the runtime Detector; print frame-level AUC / EER for each
    protocol and, at the operating point's threshold, false alarms per hour and detection delays."""
    from vadedge.train.evaluate import evaluate

    if out is None:
        is_bundle = (Path(model_dir) / "vadedge.json").is_file()
        out = Path(f"eval-{Path(model_dir).resolve().name}") if is_bundle else Path(model_dir) / "eval"
    result = evaluate(
        model_dir,
        data,
        protocol=protocol,
        out=out,
        smoothing=smoothing,
        calib_videos=calib_videos,
        threads=threads,
        progress=not quiet,
        plots=not no_plots,
        adapt_k=adapt_k,
        fps=fps,
        backend=backend,
    )
    click.echo(result.format())
    click.echo(f"results: {out / 'results.json'}")


command = eval_cmd
