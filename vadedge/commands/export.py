"""`vadedge export`: a checkpoint → a deployable bundle (ONNX FP32/FP16/INT8, optional TensorRT engine).

`vadedge export MODEL_DIR ...` exports; `vadedge export build-plugins ...` builds the TensorRT plugin
library on the target machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from vadedge.scoring import DEFAULT_MIN_EVENT_FRAMES, DEFAULT_SMOOTHING, DEFAULT_TARGET

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange

EPILOG = """\b
Examples:
  vadedge export runs/cam0 --precision fp16 --out bundles/cam0-fp16
  vadedge export runs/cam0 --precision int8 --calib-data ./normal_footage --out bundles/cam0-int8
  vadedge export runs/cam0 --engine trt --precision fp16 --plugins      (on the Jetson / GPU machine)
  vadedge export build-plugins --out plugins/ --cuda-archs 87
Then inspect the result with `vadedge info BUNDLE`.
"""


class _ExportGroup(click.Group):
    """`vadedge export MODEL_DIR [options]` by default; known subcommand names dispatch to them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


class _DefaultCommand(click.Command):
    """The group's default command: its usage line reads `vadedge export [OPTIONS] MODEL_DIR`."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent is not None else ctx.command_path
        formatter.write_usage(path, " ".join(self.collect_usage_pieces(ctx)))

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text("Build the TensorRT plugin library: vadedge export build-plugins --help")


@click.group("export", cls=_ExportGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def export_group() -> None:
    """Export a trained checkpoint to a bundle (see `vadedge export MODEL_DIR --help`)."""


@export_group.command("bundle", cls=_DefaultCommand, hidden=True, epilog=EPILOG)
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--engine",
    type=click.Choice(["onnx", "trt"]),
    default="onnx",
    show_default=True,
    help="onnx: ONNX Runtime models only; trt: also build a TensorRT engine (on the target GPU).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Precision the bundle runs in (model.onnx in FP32 is always included).",
)
@click.option(
    "--calib-data",
    type=click.Path(path_type=Path),
    default=None,
    help="Normal footage for INT8 calibration: a dataset root with training/, or a folder of videos.",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    default="minmax",
    show_default=True,
    help="INT8 activation-range calibration.",
)
@click.option(
    "--int8-target",
    type=click.Choice(["cpu", "trt"]),
    default=None,
    help="INT8 profile: cpu = uint8 activations, fastest in ONNX Runtime on CPU; trt = symmetric "
    "Q/DQ that TensorRT builds (default: trt with --engine trt, else cpu).",
)
@click.option(
    "--calib-clips",
    type=click.IntRange(min=1),
    default=None,
    help="INT8: at most this many clips from the calibration footage (default 256).",
)
@click.option(
    "--score-data",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out normal footage for score statistics and the threshold "
    "(default: --calib-data, else the checkpoint's training data).",
)
@click.option("--no-score-calibration", is_flag=True, help="Leave score calibration and threshold empty.")
@click.option(
    "--target-far",
    type=FiniteFloatRange(0, 0.5, min_open=True, max_open=True),
    default=DEFAULT_TARGET,
    show_default=True,
    help="Threshold policy: fraction of normal frames allowed above 'on'.",
)
@click.option(
    "--smoothing",
    type=FiniteFloatRange(0, 1, min_open=True),
    default=DEFAULT_SMOOTHING,
    show_default=True,
    help="Causal EMA factor of the fused score (1 = none); the threshold is fitted on it.",
)
@click.option(
    "--min-event-frames",
    type=click.IntRange(min=1),
    default=DEFAULT_MIN_EVENT_FRAMES,
    show_default=True,
    help="Shortest event the runtime reports.",
)
@click.option("--plugins", is_flag=True, help="TensorRT: replace the memory nodes with the vadedge plugins.")
@click.option(
    "--plugin-lib",
    "plugin_libs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Already built plugin library (default: build it with CMake).",
)
@click.option(
    "--batch",
    default="1",
    show_default=True,
    metavar="N|dynamic",
    help="Streams per inference call: a fixed number or 'dynamic'.",
)
@click.option("--no-error-map", is_flag=True, help="Do not output the low-resolution error map.")
@click.option("--pred", is_flag=True, help="Also output the predicted frame.")
@click.option("--opset", type=click.IntRange(min=18), default=18, show_default=True, help="ONNX opset.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Bundle folder (default: MODEL_DIR/bundle).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime threads for calibration.")
@click.option(
    "--fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Frame rate the model was trained at, recorded in the bundle; sources are sampled to it "
    "(default: the checkpoint's data.fps, else 10, the Ped2 rate).",
)
@verbosity_options
@user_errors
def export_bundle_cmd(
    model_dir: Path,
    engine: str,
    precision: str,
    calib_data: Optional[Path],
    calib_method: str,
    int8_target: Optional[str],
    calib_clips: Optional[int],
    score_data: Optional[Path],
    no_score_calibration: bool,
    target_far: float,
    smoothing: float,
    min_event_frames: int,
    plugins: bool,
    plugin_libs: tuple[Path, ...],
    batch: str,
    no_error_map: bool,
    pred: bool,
    opset: int,
    out: Optional[Path],
    threads: Optional[int],
    fps: Optional[float],
    quiet: bool,
) -> None:
    """Export the checkpoint in MODEL_DIR to a bundle: model*.onnx, state.npz and vadedge.json.

    The graph takes uint8 frames and the stream state, and returns the score components, the new
    state and a low-resolution error map. Score statistics and a threshold are calibrated on normal
    footage and written into vadedge.json for the runtime.
    """
    from vadedge.export.exporter import describe, export_bundle

    if score_data is not None and no_score_calibration:
        raise click.UsageError("--score-data and --no-score-calibration exclude each other")
    path = export_bundle(
        model_dir,
        out,
        precision=precision,
        batch=batch if batch == "dynamic" else _int(batch),
        calib_data=calib_data,
        calib_method=calib_method,
        int8_target=int8_target,
        plugins=plugins,
        error_map=not no_error_map,
        opset=opset,
        engine=engine,
        pred=pred,
        score_data=False if no_score_calibration else score_data,
        target_far=target_far,
        smoothing=smoothing,
        min_event_frames=min_event_frames,
        max_calib_clips=calib_clips,
        plugin_libraries=plugin_libs,
        threads=threads,
        progress=not quiet,
        fps=fps,
    )
    click.echo(describe(path))


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number or 'dynamic'", param_hint="--batch") from None


@export_group.command("build-plugins")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("vadedge-plugins"),
    show_default=True,
    help="Output folder for the plugin library.",
)
@click.option(
    "--cuda-archs",
    default=None,
    metavar="LIST",
    help="Comma-separated CUDA architectures, e.g. 87 (Orin) or 86,89 (default: detected GPUs).",
)
@verbosity_options
@user_errors
def build_plugins_cmd(out: Path, cuda_archs: Optional[str]) -> None:
    """Build the vadedge TensorRT plugin library (CMake + nvcc + TensorRT headers, on the target)."""
    import importlib

    from vadedge.errors import ConfigError

    try:
        plugins = importlib.import_module("vadedge.export.plugins")
    except ModuleNotFoundError as exc:
        raise ConfigError("this vadedge has no vadedge.export.plugins module; plugins are unavailable") from exc
    archs = [a.strip() for a in cuda_archs.split(",") if a.strip()] if cuda_archs else None
    lib = plugins.build_plugins(out, cuda_archs=archs)
    click.echo(f"plugin library: {lib}")


command = export_group
