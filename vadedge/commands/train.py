"""`vadedge train`: train a registered model on normal footage."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange


@click.command()
@click.option(
    "--model",
    "model_name",
    required=True,
    metavar="NAME",
    help="Registered model family (see `vadedge models`), e.g. mnad-pred.",
)
@click.option("--preset", default=None, metavar="P", help="Preset of the family: paper, edge-s, … (default: paper).")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset root with training/frames/<video>/ (or training/ video files).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint folder to write.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Override the preset's batch size.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=None, help="Override the learning rate.")
@click.option(
    "--input-size", default=None, metavar="HxW", help="Override the preset's input size, e.g. 128x192 (multiples of 8)."
)
@click.option(
    "--width-mult",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Override the preset's channel width multiplier.",
)
@click.option(
    "--color", type=click.Choice(["gray", "rgb", "bgr"]), default=None, help="Override the preset's colour mode."
)
@click.option(
    "--upsample",
    type=click.Choice(["deconv", "resize"]),
    default=None,
    help="Decoder upsampling (MNAD): deconv = the paper's transposed conv; resize = 1×1 conv + nearest ×2, "
    "cheaper and fully int8 on CPU.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, memory and shuffling.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="DataLoader workers (default: 0 when frames fit in memory, else 2).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch intra-op threads.")
@click.option(
    "--stage", default=None, metavar="STAGE", help="Training stage for multi-stage families (MPN: pretrain, dpu, meta)."
)
@click.option(
    "--init",
    type=click.Path(path_type=Path),
    default=None,
    help="Start from the weights (and state) of another checkpoint, e.g. the previous stage.",
)
@click.option(
    "--fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Frame rate of the training footage, recorded in the checkpoint and the exported bundle "
    "(sources are sampled at it; default: 10, the Ped2 rate).",
)
@verbosity_options
@user_errors
def train(
    model_name: str,
    preset: Optional[str],
    data: Path,
    out: Path,
    epochs: Optional[int],
    batch_size: Optional[int],
    lr: Optional[float],
    seed: int,
    resume: bool,
    workers: Optional[int],
    threads: Optional[int],
    stage: Optional[str],
    init: Optional[Path],
    quiet: bool,
    input_size: Optional[str],
    width_mult: Optional[float],
    color: Optional[str],
    upsample: Optional[str],
    fps: Optional[float],
) -> None:
    """Train a model on the normal videos of DATA/training."""
    overrides = {"width_mult": width_mult, "color": color, "upsample": upsample}
    if input_size:
        try:
            h, w = (int(x) for x in input_size.lower().split("x"))
        except ValueError:
            raise click.BadParameter(
                f"expected HxW such as 128x192, got {input_size!r}", param_hint="--input-size"
            ) from None
        overrides.update(height=h, width=w)
    from vadedge.train.trainer import train as run_training

    summary = run_training(
        model_name,
        data,
        out,
        preset=preset,
        epochs=epochs,
        seed=seed,
        resume=resume,
        batch_size=batch_size,
        lr=lr,
        workers=workers,
        threads=threads,
        progress=not quiet,
        stage=stage,
        init=init,
        model_overrides=overrides,
        fps=fps,
    )
    click.echo(summary.format())


command = train
