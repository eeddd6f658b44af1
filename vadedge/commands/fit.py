"""`vadedge fit FOOTAGE... --out BUNDLE`: normal footage of a camera → a calibrated, verified bundle."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange

INTERRUPTED_EXIT = 130  # Ctrl-C: the best checkpoint so far was still exported


@click.command("fit")
@click.argument("footage", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle folder to write (new).")
@click.option(
    "--fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Frame rate of frame folders, and the rate to train at (default: the video files' lowest "
    "rate); recorded as the bundle's input.fps.",
)
@click.option(
    "--budget-min",
    type=FiniteFloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Wall-time budget for training, in minutes (epochs adapt to it).",
)
@click.option(
    "--base",
    default="none",
    show_default=True,
    metavar="none|default|PATH",
    help="Start from scratch (none), or fine-tune a checkpoint folder (PATH). 'default' is refused: "
    "the shipped bundle carries no torch weights.",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "int8"]),
    default="fp32",
    show_default=True,
    help="Model the bundle runs (int8: calibrated on the same footage).",
)
@click.option("--family", default="mnad-pred", show_default=True, help="Registered model family.")
@click.option("--preset", default="edge-s", show_default=True, help="Preset of the family.")
@click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where torch trains."
)
@click.option(
    "--target-fa",
    "target_fa",
    type=FiniteFloatRange(0, 0.5, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Target false-alarm rate (fraction of normal frames); the held-out part must give "
    "max(100, 2 / target) scored frames.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch / ONNX Runtime threads.")
@verbosity_options
@user_errors
def fit_cmd(
    footage: tuple[Path, ...],
    out: Path,
    fps: Optional[float],
    budget_min: float,
    base: str,
    precision: str,
    family: str,
    preset: str,
    device: str,
    target_fa: float,
    seed: int,
    threads: Optional[int],
    quiet: bool,
) -> None:
    """Train, export and calibrate a bundle for one camera from its NORMAL FOOTAGE.

    \b
    FOOTAGE is any mix of video files, frame folders (give --fps) and dataset roots (their training/).
    Whole videos are held out from the end until >= 25 % of the frames are held out (one video: its
    last 20 %); training keeps the checkpoint with the lowest loss on the held-out part, which then
    selects the score components and calibrates their statistics and the threshold. Too short: the
    held-out part must give 200 scored frames at the default --target-fa, 100 before its last video
    (one video: >= 1040 frames).
    \b
    Example:
      vadedge fit plaza/ --fps 10 --out plaza-bundle/
      vadedge run camera0 --model plaza-bundle/

    Ctrl-C stops training, exports the best checkpoint so far, and exits with code 130.
    """
    from vadedge.train.fit import fit

    report = fit(
        footage,
        out,
        fps=fps,
        budget_min=budget_min,
        base=base,
        precision=precision,
        family=family,
        preset=preset,
        device=device,
        target=target_fa,
        seed=seed,
        threads=threads,
        progress=not quiet,
    )
    click.echo(report.format())
    if report.interrupted:
        sys.exit(INTERRUPTED_EXIT)


command = fit_cmd
