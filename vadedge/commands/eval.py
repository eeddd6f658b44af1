"""`vadedge eval`: frame-level AUC / EER under the paper and streaming protocols."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options


@click.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
              help="Checkpoint folder written by `vadedge train`.")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Dataset root with testing/frames/<video>/ and labels.json (or frame_labels_*.npy).")
@click.option("--protocol", type=click.Choice(["paper", "streaming", "both"]), default="both", show_default=True,
              help="paper: per-video min-max (offline, as the papers); streaming: causal, calibrated on training footage.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for results.json, scores.csv, roc.png and per-video score plots (default: MODEL/eval).")
@click.option("--smoothing", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Streaming protocol: causal EMA factor (1 = no smoothing).")
@click.option("--calib-videos", type=click.IntRange(min=1), default=None,
              help="Streaming protocol: calibrate on only the first N training videos.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--adapt-k", type=click.IntRange(min=0), default=0, show_default=True,
              help="Few-shot models (MPN): adapt each video on its first K clips, score the rest.")
@verbosity_options
@user_errors
def eval_cmd(model_dir: Path, data: Path, protocol: str, out: Optional[Path], smoothing: float,
             calib_videos: Optional[int], threads: Optional[int], no_plots: bool, quiet: bool,
             adapt_k: int) -> None:
    """Score DATA/testing in stream order and print frame-level AUC / EER for each protocol."""
    from vadedge.train.evaluate import evaluate

    out = out or Path(model_dir) / "eval"
    result = evaluate(model_dir, data, protocol=protocol, out=out, smoothing=smoothing, calib_videos=calib_videos,
                      threads=threads, progress=not quiet, plots=not no_plots, adapt_k=adapt_k)
    click.echo(result.format())
    click.echo(f"results: {out / 'results.json'}")


command = eval_cmd
