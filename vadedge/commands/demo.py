"""`vadedge demo`: the default model end to end on a Ped2 test video (or a generated clip)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("vadedge-demo"),
    show_default=True,
    help="Folder for demo.mp4, events.jsonl, scores.csv and scores.png.",
)
@click.option(
    "--model",
    "-m",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="Bundle to demo (default: the model shipped with vadedge).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="UCSD Ped2 root (default: $VADEDGE_PED2 or ../shared/datasets/ped2 if present; "
    "otherwise a generated synthetic clip is used).",
)
@click.option("--video", default=None, help="Which test video of the dataset (default: 02 if present, else the first).")
@click.option("--synthetic", is_flag=True, help="Use a generated synthetic clip even if Ped2 is present.")
@click.option(
    "--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]), default="auto", show_default=True
)
@click.option("--device", default="auto", show_default=True, help="cpu, cuda[:N] or tensorrt[:N].")
@click.option("--threshold", default=None, metavar="ON[:OFF]", help="Override the bundle's event threshold.")
@verbosity_options
@user_errors
def demo_cmd(
    out: Path,
    model: Optional[Path],
    data: Optional[Path],
    video: Optional[str],
    synthetic: bool,
    backend: str,
    device: str,
    threshold: Optional[str],
    quiet: bool,
) -> None:
    """Run a model on a test video and write an annotated MP4, the events and a score plot.

    \b
    Uses a UCSD Ped2 test video when the dataset is available (ground truth is shaded in the
    plot), else a generated synthetic scene with an injected anomaly. A generated scene is new to
    the model: the demo first calibrates a copy of the bundle on normal footage of that scene
    (OUT/calibrated-bundle/, as `vadedge calibrate` does) and runs the copy.
    """
    from vadedge.runtime.demo import run_demo

    from .run import parse_threshold

    result = run_demo(
        out,
        model=model,
        data=data,
        video=video,
        synthetic=synthetic,
        backend=backend,
        device=device,
        threshold=parse_threshold(threshold),
        progress=not quiet,
    )
    click.echo(result.format())
    if result.summary.interrupted:
        sys.exit(result.summary.exit_code)


command = demo_cmd
