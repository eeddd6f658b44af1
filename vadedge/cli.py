"""The `vadedge` command line: a thin layer over the Python API. User mistakes exit with code 2."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import click

from ._version import __version__
from .errors import VadedgeError


def _user_errors(fn):
    """Turn VadedgeError (bad path, bad data, missing extra…) into 'Error: …' on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VadedgeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vadedge")
def cli() -> None:
    """vadedge — learn what normal looks like for a fixed camera and flag unusual events.

    \b
    Typical flow:
      vadedge train --model mnad-pred --preset edge-s --data ./footage --out runs/cam0
      vadedge eval  --model runs/cam0 --data ./footage --protocol both
    """


@cli.command()
@click.option("--model", "model_name", required=True, metavar="NAME",
              help="Registered model family (see `vadedge models`), e.g. mnad-pred.")
@click.option("--preset", default=None, metavar="P", help="Preset of the family: paper, edge-s, … (default: paper).")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Dataset root with training/frames/<video>/ (or training/ video files).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint folder to write.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Override the preset's batch size.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Override the learning rate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, memory and shuffling.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader workers (default: 0 when frames fit in memory, else 2).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
@click.option("--stage", default=None, metavar="STAGE",
              help="Training stage for multi-stage families (MPN: pretrain, dpu, meta).")
@click.option("--init", type=click.Path(path_type=Path), default=None,
              help="Start from the weights (and state) of another checkpoint, e.g. the previous stage.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_user_errors
def train(model_name: str, preset: Optional[str], data: Path, out: Path, epochs: Optional[int],
          batch_size: Optional[int], lr: Optional[float], seed: int, resume: bool, workers: Optional[int],
          threads: Optional[int], stage: Optional[str], init: Optional[Path], quiet: bool) -> None:
    """Train a model on the normal videos of DATA/training."""
    from .train.trainer import train as run_training

    summary = run_training(model_name, data, out, preset=preset, epochs=epochs, seed=seed, resume=resume,
                           batch_size=batch_size, lr=lr, workers=workers, threads=threads,
                           progress=not quiet, stage=stage, init=init)
    click.echo(summary.format())


@cli.command("eval")
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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_user_errors
def eval_cmd(model_dir: Path, data: Path, protocol: str, out: Optional[Path], smoothing: float,
             calib_videos: Optional[int], threads: Optional[int], no_plots: bool, quiet: bool) -> None:
    """Score DATA/testing in stream order and print frame-level AUC / EER for each protocol."""
    from .train.evaluate import evaluate

    out = out or Path(model_dir) / "eval"
    result = evaluate(model_dir, data, protocol=protocol, out=out, smoothing=smoothing, calib_videos=calib_videos,
                      threads=threads, progress=not quiet, plots=not no_plots)
    click.echo(result.format())
    click.echo(f"results: {out / 'results.json'}")


@cli.command()
@_user_errors
def models() -> None:
    """List registered model families and their presets."""
    from .train.registry import get_model_entry, list_models
    from .train.flops import gmac_per_frame, count_parameters

    for name in list_models():
        entry = get_model_entry(name)
        click.echo(f"{name}: {entry.description}")
        for preset in sorted(entry.presets):
            cfg = entry.presets[preset]["model"]
            net = entry.build(cfg)
            click.echo(f"  {preset:8s} {cfg['height']}x{cfg['width']} {cfg['color']:4s} width {cfg['width_mult']:<5}"
                       f" {count_parameters(net) / 1e6:6.2f} M params  {gmac_per_frame(net):7.3f} GMAC/frame")


def main() -> None:
    cli(prog_name="vadedge")


if __name__ == "__main__":
    main()
