"""`vadedge run SOURCE`: score a camera, stream, video file or frames folder live and report events."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import click

from ._errors import user_errors
from ._logging import verbosity_options
from ._params import FiniteFloatRange


def parse_threshold(text: Optional[str]) -> Optional[tuple[float, float]]:
    """'3' -> (3, 3); '3:2' or '3,2' -> (3, 2) (on, off)."""
    if text is None:
        return None
    parts = text.replace(",", ":").split(":")
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"expected ON or ON:OFF numbers, got {text!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise click.BadParameter(f"thresholds must be finite numbers, got {text!r}")
    if len(vals) == 1:
        return vals[0], vals[0]
    if len(vals) == 2 and vals[1] <= vals[0]:
        return vals[0], vals[1]
    raise click.BadParameter(f"expected ON or ON:OFF with OFF <= ON, got {text!r}")


@click.command("run")
@click.argument("source", required=False)
@click.option(
    "--config",
    "config",
    type=click.Path(path_type=Path),
    default=None,
    help="Run the cameras of a YAML config file (cameras, sinks, metrics, state dir; "
    "docs/integrations.md) instead of SOURCE and the options below.",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the resolved config (of --config, or of SOURCE and the options) as YAML and exit.",
)
@click.option(
    "--model",
    "-m",
    "model",
    type=click.Path(path_type=Path),
    default=None,
    help="Bundle folder from `vadedge export` (or a checkpoint folder with --backend torch). "
    "Default: the model shipped with vadedge.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "onnxruntime", "tensorrt", "torch"]),
    default="auto",
    show_default=True,
    help="Inference backend; auto = the bundle's TensorRT engine if TensorRT is "
    "installed, else ONNX Runtime (GPU if available).",
)
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="cpu, cuda[:N], or tensorrt[:N] (ONNX Runtime's TensorRT execution provider).",
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="Which of the bundle's models to run (default: the one it was exported for).",
)
@click.option(
    "--engine",
    type=click.Path(path_type=Path),
    default=None,
    help="TensorRT engine file (default: the bundle's engine for this GPU).",
)
@click.option(
    "--plugins",
    "plugins",
    multiple=True,
    type=click.Path(path_type=Path),
    help="TensorRT plugin library (.so) for bundles exported with --plugins; repeatable.",
)
@click.option(
    "--events",
    type=click.Path(path_type=Path),
    default=None,
    help="Append events as JSON lines (camera, persistent id; each fsynced when reported; never truncated).",
)
@click.option("--scores", type=click.Path(path_type=Path), default=None, help="Write per-frame scores as CSV.")
@click.option(
    "--save-video",
    type=click.Path(path_type=Path),
    default=None,
    help="Write an annotated video (.mp4/.avi): heatmap overlay + score strip.",
)
@click.option("--show", is_flag=True, help="Show the annotated frames in a window (q / Esc stops).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option(
    "--threshold",
    default=None,
    metavar="ON[:OFF]",
    help="Override the bundle's calibrated event threshold (hysteresis: start at ON, end at OFF).",
)
@click.option(
    "--smoothing",
    type=FiniteFloatRange(0, 1, min_open=True),
    default=None,
    help="Override the causal EMA factor (1 = no smoothing).",
)
@click.option(
    "--min-event-frames", type=click.IntRange(min=1), default=None, help="Override the minimum event length in frames."
)
@click.option(
    "--fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Frame rate of SOURCE when it has no timing (frames folders; default: the model's rate); "
    "video files and cameras report their own.",
)
@click.option(
    "--sample-fps",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Score frames at this rate (default: the rate the model was trained at, from the bundle); "
    "a faster source is subsampled evenly by timestamp.",
)
@click.option("--all-frames", is_flag=True, help="Score every frame of SOURCE, whatever its rate (no sampling).")
@click.option(
    "--adapt-k",
    type=click.IntRange(min=1),
    default=None,
    help="MPN bundles: adapt to the scene on the first K clips (needs torch).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for inference.")
@click.option(
    "--max-reconnects",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Live sources: give up after this many reconnect attempts in a row without a frame.",
)
@click.option(
    "--source-lost-after",
    type=FiniteFloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Live sources: close an open event (reason source_lost) after this many seconds without frames.",
)
@click.option("--no-heatmap", is_flag=True, help="Do not draw / keep error maps.")
@click.option(
    "--camera-name",
    default="default",
    show_default=True,
    help="Camera name in event messages, MQTT topics and metrics (letters, digits, _ . -).",
)
@click.option(
    "--webhook",
    "webhooks",
    multiple=True,
    metavar="URL",
    help="POST new / update / end event messages (JSON) to URL; spooled while it is down. Repeatable.",
)
@click.option(
    "--mqtt",
    default=None,
    metavar="HOST[:PORT][/PREFIX]",
    help="Publish events to an MQTT broker, Frigate-style topics under PREFIX (default vadedge).",
)
@click.option(
    "--metrics",
    default=None,
    metavar="[HOST:]PORT",
    help="Serve Prometheus /metrics and /healthz (host default 127.0.0.1).",
)
@click.option(
    "--snapshots",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Write a JPEG of each event's peak frame (error heat-map, peak box) into DIR; its path goes "
    "into the event messages and the --events log.",
)
@click.option(
    "--clips",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Write an MP4 of each event (from --pre-roll s before its start to --post-roll s after its "
    "end) into DIR; its path goes into the event messages and the --events log.",
)
@click.option(
    "--pre-roll",
    type=FiniteFloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds of video before an event's start in its clip.",
)
@click.option(
    "--post-roll",
    type=FiniteFloatRange(min=0),
    default=5.0,
    show_default=True,
    help="Seconds of video after an event's end in its clip.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=Path("vadedge-state"),
    show_default=True,
    help="Folder for the webhook / MQTT spools and the persistent event numbers.",
)
@click.option(
    "--mask",
    "mask_file",
    type=click.Path(path_type=Path),
    default=None,
    help="ROI / privacy mask for the local score components: a JSON file {width, height, mode: "
    "exclude|include, polygons: [[[x, y], ...], ...]} in the source's pixel coordinates "
    "(replaces the bundle's score.mask).",
)
@click.option(
    "--server",
    default=None,
    metavar="grpc://HOST:PORT",
    help="Score on a Triton server serving a `vadedge triton-repo` model (docs/deployment.md); "
    "--model then names the Triton model (default vadedge). Decoding and resizing stay here.",
)
@verbosity_options
@user_errors
def run_cmd(
    source: str,
    model: Optional[Path],
    backend: str,
    device: str,
    precision: Optional[str],
    engine: Optional[Path],
    plugins: tuple[Path, ...],
    events: Optional[Path],
    scores: Optional[Path],
    save_video: Optional[Path],
    show: bool,
    max_frames: Optional[int],
    threshold: Optional[str],
    smoothing: Optional[float],
    min_event_frames: Optional[int],
    fps: Optional[float],
    sample_fps: Optional[float],
    all_frames: bool,
    adapt_k: Optional[int],
    threads: Optional[int],
    max_reconnects: int,
    source_lost_after: float,
    no_heatmap: bool,
    camera_name: str,
    webhooks: tuple[str, ...],
    mqtt: Optional[str],
    metrics: Optional[str],
    state_dir: Path,
    mask_file: Optional[Path],
    server: Optional[str],
    config: Optional[Path],
    print_config: bool,
    snapshots: Optional[Path],
    clips: Optional[Path],
    pre_roll: float,
    post_roll: float,
    quiet: bool,
) -> None:
    """Score SOURCE frame by frame and report anomalous events.

    \b
    SOURCE is one of:
      camera0 | 0 | /dev/video0     a camera (OpenCV capture; reconnects with backoff)
      rtsp://… | http://…           a network stream (reconnects with backoff)
      clip.mp4                      a video file
      frames/                       a folder of images, in file-name order
    \b
    Examples:
      vadedge run camera0 --model bundle/ --events events.jsonl --show
      vadedge run clip.mp4 --save-video annotated.mp4 --scores scores.csv

    Frames are scored at the rate the model was trained at (the bundle's input.fps): a faster
    source is subsampled evenly by timestamp (30 fps -> 10 fps keeps every 3rd frame), a slower
    one is warned about once. --sample-fps overrides the rate, --all-frames turns sampling off.

    Ctrl-C, SIGTERM or SIGHUP stops cleanly: open events are closed and written, outputs are
    finalised; the exit code is 128 + the signal number (130, 143, 129). Output paths are checked
    against the inputs and each other before anything is opened.

    With --config cameras.yaml, one process runs every camera of the file (decoding in a thread
    per camera, inference batched across cameras that share a model); a live camera that is down
    at start-up is retried in the background. See docs/integrations.md.
    """
    if config is not None:
        _reject_options_with_config(click.get_current_context())
        _run_config(config, print_config, quiet)
        return
    if source is None:
        raise click.UsageError("give a SOURCE or --config FILE")
    if print_config:
        from vadedge.runconfig import from_cli_options

        opts = dict(locals(), threshold=parse_threshold(threshold))
        click.echo(from_cli_options(**opts).to_yaml(), nl=False)
        return
    from vadedge.runtime import Detector, open_source
    from vadedge.runtime.pipeline import Interrupted, interruptible, run_source
    from vadedge.runtime.sinks import check_outputs

    thr = parse_threshold(threshold)
    if server is not None and scores is not None:
        raise click.UsageError("--scores is not available with --server yet (use --events)")
    if all_frames and sample_fps is not None:
        raise click.UsageError("--sample-fps and --all-frames exclude each other")
    mask = None
    if mask_file is not None:
        from vadedge.roi import read_mask

        mask = read_mask(mask_file)
    feed, meter = _integrations(
        camera_name,
        webhooks,
        mqtt,
        metrics,
        state_dir,
        dict(snapshots=snapshots, clips=clips, pre_roll=pre_roll, post_roll=post_roll),
    )
    check_outputs(
        {"events": events, "scores": scores, "video": save_video},
        inputs=[None if _is_remote(source) else Path(source), None if server else model, engine, *plugins],
    )
    src = None
    try:
        with interruptible():
            # a mistyped source is the commonest error: check it first
            src = open_source(source, fps=fps, max_reconnects=max_reconnects)
            if server is not None:
                det = Detector.connect(server, model=str(model or "vadedge"))
            else:
                det = Detector.load(
                    model,
                    backend=backend,
                    device=device,
                    precision=precision,
                    threshold=thr,
                    smoothing=smoothing,
                    min_event_frames=min_event_frames,
                    heatmap=not no_heatmap,
                    threads=threads,
                    plugin_libraries=[str(p) for p in plugins],
                    engine=engine,
                    adapt_k=adapt_k,
                    mask=mask,
                )
            src.sample_at(None if all_frames else sample_fps or det.frame_rate)
    except KeyboardInterrupt as exc:
        if src is not None:
            src.close()
        _close_integrations(feed, meter)
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        click.echo(f"interrupted while {'loading the model' if src is not None else 'opening the source'}", err=True)
        sys.exit(code)
    except BaseException:
        if src is not None:
            src.close()
        _close_integrations(feed, meter)
        raise
    if not quiet:
        click.echo(f"model: {det.describe()}", err=True)
        if not det.recipe.has_threshold:
            click.echo(
                "note: the bundle has no calibrated threshold, so no events are raised "
                "(pass --threshold ON[:OFF] or export with calibration data)",
                err=True,
            )
        elif det.recipe.calibration is None:
            click.echo("note: the bundle has no score calibration; scores are raw fused values", err=True)
    try:
        summary = run_source(
            det,
            src,
            events=events,
            scores=scores,
            video=save_video,
            show=show,
            max_frames=max_frames,
            progress=not quiet,
            source_lost_after=source_lost_after,
            stream=camera_name,
            feed=feed,
            metrics=meter,
        )
    finally:
        det.close()
        if meter is not None:
            meter.close()
    click.echo(summary.format())
    if summary.interrupted:
        sys.exit(summary.exit_code)


def _reject_options_with_config(ctx: click.Context) -> None:
    """With --config the file says everything: an option of the single-camera form is a mistake."""
    from click.core import ParameterSource

    extra = [
        p.opts[0] if p.opts else p.name
        for p in ctx.command.params
        if p.name not in ("config", "print_config", "quiet", "verbose")
        and ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE
    ]
    if extra:
        raise click.UsageError(f"{', '.join(extra)} cannot be combined with --config: write them in the file")


def _run_config(path: Path, print_config: bool, quiet: bool) -> None:
    """`vadedge run --config FILE`: every enabled camera of the file in this process."""
    from vadedge.delivery.wiring import open_delivery
    from vadedge.runconfig import load_config, sink_specs
    from vadedge.runtime.cameras import run_cameras

    cfg = load_config(path)
    if print_config:
        click.echo(cfg.to_yaml(), nl=False)
        return
    cams = cfg.enabled
    feed, meter = open_delivery(
        [c.name for c in cams],
        sink_specs(cfg),
        cfg.metrics,
        cfg.state_dir,
        snapshots=cfg.snapshots,
        clips=cfg.clips,
        pre_roll=cfg.pre_roll,
        post_roll=cfg.post_roll,
    )
    summary = run_cameras(cfg, feed=feed, metrics=meter)
    click.echo(summary.format())
    if summary.interrupted:
        sys.exit(summary.exit_code)


def _integrations(
    camera: str, webhooks: tuple[str, ...], mqtt: Optional[str], metrics: Optional[str], state_dir: Path, media: dict
):  # noqa: ANN202 - (EventFeed | None, Metrics | None)
    """Build the event feed (webhook / MQTT sinks) and the metrics server the options ask for."""
    from vadedge.delivery import MqttSettings
    from vadedge.delivery.wiring import open_delivery

    sinks: list[tuple[str, object]] = [("webhook", {"url": url}) for url in webhooks]
    if mqtt is not None:
        sinks.append(("mqtt", MqttSettings.parse(mqtt)))
    return open_delivery([camera], sinks, metrics, state_dir, **media)


def _close_integrations(feed, meter) -> None:  # noqa: ANN001
    from vadedge.delivery.wiring import close_quietly

    close_quietly(feed, meter)


def _is_remote(source: str) -> bool:
    """A URL or a camera: nothing on disk that an output could overwrite."""
    from vadedge.runtime.sources import URL_SCHEMES, parse_camera

    return source.lower().startswith(URL_SCHEMES) or parse_camera(source) is not None


command = run_cmd
