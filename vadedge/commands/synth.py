"""`vadedge synth`: write the deterministic synthetic scene dataset (Ped2 layout, labelled anomalies)."""

from __future__ import annotations

from pathlib import Path

import click

from ._errors import user_errors
from ._logging import verbosity_options


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--train-videos", type=click.IntRange(min=1), default=4, show_default=True)
@click.option(
    "--test-videos",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Test videos; they cycle through the anomaly kinds (speed, direction, shape).",
)
@click.option("--frames", "frames_per_video", type=click.IntRange(min=8), default=80, show_default=True)
@click.option("--size", default="96x128", show_default=True, metavar="HxW", help="Frame size.")
@click.option("--seed", type=int, default=0, show_default=True)
@verbosity_options
@user_errors
def synth(out: Path, train_videos: int, test_videos: int, frames_per_video: int, size: str, seed: int) -> None:
    """Generate a synthetic fixed-camera dataset into OUT (training/, testing/, labels.json)."""
    from vadedge.synthetic import generate_dataset

    try:
        h, w = (int(x) for x in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 96x128, got {size!r}", param_hint="--size") from None
    root = generate_dataset(
        out,
        train_videos=train_videos,
        test_videos=test_videos,
        frames_per_video=frames_per_video,
        height=h,
        width=w,
        seed=seed,
    )
    click.echo(f"wrote {train_videos} normal and {test_videos} test videos of {frames_per_video} frames to {root}")


command = synth
