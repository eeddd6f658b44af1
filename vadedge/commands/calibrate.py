"""`vadedge calibrate BUNDLE FOOTAGE...`: re-fit a bundle's score statistics and threshold on normal footage."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange


@click.command("calibrate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("footage", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the calibrated bundle to this new folder (the bundle is copied).",
)
@click.option("--in-place", is_flag=True, help="Update BUNDLE's vadedge.json instead of writing a copy.")
@click.option(
    "--target-fa",
    "target_fa",
    type=FiniteFloatRange(0, 0.5, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="Target false-alarm rate: the fraction of normal frames whose smoothed score may reach the threshold.",
)
@click.option(
    "--fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Frame rate of frame folders (default: the bundle's rate); video files report their own.",
)
@click.option(
    "--mask",
    "mask_file",
    type=click.Path(path_type=Path),
    default=None,
    help="ROI / privacy mask JSON (as for vadedge run --mask): stored in the bundle and applied while "
    "calibrating its local score components.",
)
@click.option(
    "--select",
    is_flag=True,
    help="Also choose the score components on the footage: hold out its last 25 %% of videos (at "
    "least one), drop components that are degenerate there (recorded in score.dropped with the "
    "reason), weight the others equally, fit on the rest, and report the expected false alarms "
    "per hour on the held-out videos.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime threads.")
@verbosity_options
@user_errors
def calibrate_cmd(
    bundle: Path,
    footage: tuple[Path, ...],
    out: Optional[Path],
    in_place: bool,
    target_fa: float,
    fps: Optional[float],
    mask_file: Optional[Path],
    select: bool,
    threads: Optional[int],
    quiet: bool,
) -> None:
    """Re-fit BUNDLE's score statistics and threshold on NORMAL FOOTAGE of a camera (no torch needed).

    \b
    FOOTAGE is any mix of:
      clip.mp4            a video file (its own frame rate)
      frames/             a folder of image frames (rate: --fps, else the bundle's)
      videos/             a folder of videos or of frame folders
      dataset/            a dataset root: its training/ split
    \b
    Example:
      vadedge calibrate bundle/ cam0-normal.mp4 --out bundle-cam0/
      vadedge run camera0 --model bundle-cam0/

    Frames are sampled at the bundle's frame rate, scored by its graph, and the robust
    statistics of each score component plus the threshold for --target-fa are written into
    vadedge.json; weights, signs, smoothing and the minimum event length are kept (with
    --select the weights and score.dropped are chosen on held-out videos). Footage must be of one
    size and give at least max(100, 2 / target-fa) scored frames (with --select: in the videos
    fitted on, and at least 2 videos).
    """
    from vadedge.calibration.recalibrate import calibrate_bundle

    if (out is None) == (not in_place):
        raise click.UsageError("give either --out NEW_BUNDLE or --in-place")
    mask = None
    if mask_file is not None:
        from vadedge.roi import read_mask

        mask = read_mask(mask_file)
    report = calibrate_bundle(
        bundle,
        footage,
        out=out,
        in_place=in_place,
        target=target_fa,
        fps=fps,
        threads=threads,
        mask=mask,
        select=select,
        progress=not quiet,
    )
    click.echo(report.format())


command = calibrate_cmd
