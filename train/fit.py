"""`fit`: normal footage of a new camera → a calibrated, verified bundle, within a wall-time budget.

Steps: read the footage (the calibration readers: video files, frame folders, dataset roots) at one
frame rate → check it (readable, one size, motion somewhere, long enough) → split by video into a
train part and a held-out part (`split_videos`) → train within `budget_min`, keeping the checkpoint
with the lowest validation loss on the held-out part → export ONNX (FP32, or INT8 calibrated on the
train part) and declare the local error components (`with_local`) → on the held-out part,
`calibrate_bundle(select=True)` chooses the components (the degenerate-component guard, equal
weights over the survivors; decided on its last video, `calibration_pieces` cuts a single held-out
video in two halves), then `calibrate_bundle` re-fits the statistics + the threshold for `target`
on every held-out video → load the bundle and replay the held-out part through it (each video a
fresh stream): the events there give the expected false alarms per hour. The held-out part is
never trained on, but the threshold is calibrated on it, so that figure is optimistic.

Split rule: whole videos are held out from the end, in the order given, until the held-out part has
at least 25 % of the frames (at least one video, at least one left to train on); with a single video
its last 20 % is held out.
Too short: the held-out part must give `min_frames(target)` scored frames (200 at the default
false-alarm rate 0.01, 20 s at 10 fps; a video loses 4 warm-up frames), `min_frames(SELECT_TARGET)`
= 100 of them before its last video (the selection fits there), and the train part needs
`MIN_TRAIN_FRAMES` frames; a single video therefore needs ≥ 1040 frames (104 s at 10 fps).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import cv2
import numpy as np

from vadedge.errors import CheckpointError, ConfigError, DataError
from vadedge.progress import Progress
from vadedge.scoring import DEFAULT_TARGET

logger = logging.getLogger(__name__)

HELDOUT_FRACTION = 0.25  # of the frames, held out as whole videos (several videos)
SINGLE_HELDOUT_FRACTION = 0.20  # of a single video: its last 20 %
MIN_TRAIN_FRAMES = 100
MOTION_LEVEL = 10  # grey levels
MOTION_FRACTION = 5e-4  # of the pixels
VALIDATION_CLIPS = 256  # at most, evenly spaced over the held-out part
SELECT_TARGET = 0.02  # of the selection step only (its fit part needs min_frames(0.02) = 100 scored frames)


@dataclass
class FitReport:
    """What `fit` did; `format()` is what `vadedge fit` prints."""

    bundle: Path
    fps: float
    frames_train: int
    frames_heldout: int
    videos_train: list[str]
    videos_heldout: list[str]
    epochs: float
    steps: int
    seconds: float
    val_loss: float
    threshold: float
    heldout_events: int
    heldout_seconds: float
    false_alarms_per_hour: float  # the held-out part replayed through the bundle (each video a fresh stream)
    weights: dict
    dropped: dict
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)

    def format(self) -> str:
        lines = [
            f"fitted {self.bundle}{' (interrupted: best checkpoint so far)' if self.interrupted else ''}",
            f"footage: {self.frames_train} frames to train ({len(self.videos_train)} videos), "
            f"{self.frames_heldout} held out ({', '.join(self.videos_heldout)}) at {self.fps:g} fps",
            f"training: {self.epochs:.1f} epochs, {self.steps} steps in {self.seconds / 60:.1f} min; "
            f"best validation loss {self.val_loss:.5f}",
            "score: weights "
            + ", ".join(f"{c} {w:.3g}" for c, w in self.weights.items() if w)
            + "".join(f"; dropped {c}" for c in self.dropped),
            f"threshold {self.threshold:.3f}; held-out normal footage (not trained on; the threshold is "
            f"calibrated on it): {self.heldout_events} events in {self.heldout_seconds:.0f} s, "
            f"{self.false_alarms_per_hour:.1f} false alarms per hour expected",
        ]
        return "\n".join(lines)


@dataclass
class _Footage:
    name: str
    frames: list  # raw uint8 frames, sampled at the fit rate


def fit(
    footage: Sequence[Union[str, Path]],
    out: Union[str, Path],
    *,
    fps: Optional[float] = None,
    budget_min: float = 15.0,
    base: Union[str, Path] = "none",
    precision: str = "fp32",
    family: str = "mnad-pred",
    preset: str = "edge-s",
    model_overrides: Optional[dict] = None,
    device: str = "cpu",
    target: float = DEFAULT_TARGET,
    seed: int = 0,
    threads: Optional[int] = None,
    max_epochs: Optional[int] = None,
    progress: bool = True,
) -> FitReport:
    """Train, export, calibrate and verify a bundle at `out` from normal `footage` (module doc).

    `base`: "none" (from scratch), "default" (the shipped model: refused, it ships no torch weights)
    or a checkpoint folder to fine-tune (its family/preset/model config are used). `max_epochs` also
    stops training after that many epochs (whichever limit comes first; a reproducible run).
    Raises DataError for footage that is missing, unreadable, of mixed sizes, without motion or too
    short; ConfigError for bad options (also `device="cuda"` where torch sees no GPU).
    """
    from vadedge.calibration.recalibrate import collect_footage, heldout_count, min_frames

    if precision not in ("fp32", "int8"):
        raise ConfigError(f"precision must be fp32 or int8, got {precision!r}")
    if not (budget_min > 0 and math.isfinite(budget_min)):
        raise ConfigError(f"the time budget must be > 0 minutes, got {budget_min}")
    base_dir = _check_base(base)
    torch_device = _check_device(device)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists; choose a new folder")
    items = collect_footage(footage, fps)
    rate = _fit_rate(items, fps)
    videos = _read(items, rate)
    _check_motion(videos)
    train_part, held_part = split_videos(videos)
    cfg = _config(family, preset, model_overrides, base_dir)
    from vadedge.train.registry import get_model_entry

    clip = get_model_entry(cfg["name"]).build_model(cfg["model"]).clip_length
    pieces = calibration_pieces(held_part)
    n_sel = heldout_count(len(pieces))
    scored = [max(0, len(v.frames) - clip + 1) for v in pieces]
    sel_scored, cal_scored = sum(scored[: len(pieces) - n_sel]), sum(scored)
    n_train = sum(len(v.frames) for v in train_part)
    if (
        sel_scored < min_frames(SELECT_TARGET)
        or cal_scored < min_frames(target)
        or n_train < MIN_TRAIN_FRAMES
        or min(len(v.frames) for v in pieces) < clip
    ):
        total = sum(len(v.frames) for v in videos)
        one = math.ceil(
            max(2 * (min_frames(SELECT_TARGET) + clip - 1), min_frames(target) + 2 * (clip - 1))
            / SINGLE_HELDOUT_FRACTION
        )
        raise DataError(
            f"footage too short: {total} frames at {rate:g} fps; the held-out part "
            f"({sum(len(v.frames) for v in held_part)} frames) gives {cal_scored} scored frames to "
            f"calibrate on (needs {min_frames(target)}), {sel_scored} of them before its last "
            f"video (needs {min_frames(SELECT_TARGET)} to select the components), and the train "
            f"part has {n_train} frames (needs {MIN_TRAIN_FRAMES}); a single video needs at least "
            f"{one} frames (about {math.ceil(one / rate)} s)"
        )
    report = Progress(logger, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.fit.", dir=out.parent))
    try:
        train_root, held_root = work / "train", work / "heldout"
        _write(train_part, train_root / "training" / "frames")
        _write(pieces, held_root / "training" / "frames")
        ckpt = work / "checkpoint"
        cfg["data"] = {"fps": rate}
        trained = _train(
            cfg,
            train_root,
            held_root,
            ckpt,
            base_dir,
            budget_min * 60.0,
            max_epochs,
            torch_device,
            seed,
            threads,
            report,
        )
        return _finish(
            out,
            ckpt,
            trained,
            rate,
            precision,
            train_root,
            held_root,
            pieces,
            train_part,
            target,
            threads,
            progress,
            report,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def split_videos(videos: list[_Footage]) -> tuple[list[_Footage], list[_Footage]]:
    """(train, held-out) by the module doc's rule."""
    if len(videos) == 1:
        v = videos[0]
        cut = len(v.frames) - int(round(len(v.frames) * SINGLE_HELDOUT_FRACTION))
        return [_Footage(v.name, v.frames[:cut])], [_Footage(f"{v.name}-end", v.frames[cut:])]
    total = sum(len(v.frames) for v in videos)
    held: list[_Footage] = []
    while len(videos) - len(held) > 1 and (not held or sum(len(v.frames) for v in held) < HELDOUT_FRACTION * total):
        held.insert(0, videos[len(videos) - len(held) - 1])
    return videos[: len(videos) - len(held)], held


def calibration_pieces(held_part: list[_Footage]) -> list[_Footage]:
    """The held-out part as `calibrate --select` takes it: its videos, or a single video cut in two halves
    (selection needs two: statistics + threshold on the first, the degenerate-component check and the
    expected false alarms on the second)."""
    if len(held_part) > 1:
        return held_part
    v = held_part[0]
    half = len(v.frames) // 2
    return [_Footage(f"{v.name}-a", v.frames[:half]), _Footage(f"{v.name}-b", v.frames[half:])]


def _check_base(base: Union[str, Path]) -> Optional[Path]:
    if str(base) == "none":
        return None
    if str(base) == "default":
        raise ConfigError(
            "--base default: the shipped bundle holds ONNX weights only (no torch checkpoint) and "
            "cannot be fine-tuned; use --base none or --base CHECKPOINT_DIR"
        )
    path = Path(base)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"--base {path} is not a vadedge checkpoint folder (no config.json)")
    return path


def _check_device(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: torch sees no CUDA GPU on this machine; use --device cpu")
    return device


def _fit_rate(items: list, fps: Optional[float]) -> float:
    """The frame rate to train at: `fps`, else the lowest rate the video files report."""
    if fps is not None:
        return float(fps)
    unknown = [it.name for it in items if not it.fps]
    if unknown:
        raise ConfigError(f"frame folders carry no timing ({', '.join(unknown[:3])}); pass --fps")
    return min(float(it.fps) for it in items)


def _read(items: list, rate: float) -> list[_Footage]:
    """Every video's frames sampled at `rate` (DataError: unreadable, empty, mixed sizes)."""
    from vadedge.runtime.sampling import sample_indices

    out, shape = [], None
    for it in items:
        try:
            raw = list(it.video.iter_frames())
        except (OSError, cv2.error) as exc:
            raise DataError(f"cannot read footage {it.name}: {exc}") from None
        if not raw:
            raise DataError(f"footage {it.video.source} has no readable frames")
        for f in raw:
            if shape is None:
                shape = (it.name, f.shape)
            elif f.shape != shape[1]:
                raise DataError(
                    f"mixed frame sizes: {it.name} has frames of {f.shape[1]}x{f.shape[0]}, "
                    f"{shape[0]} of {shape[1][1]}x{shape[1][0]}; fit on footage of one camera"
                )
        keep = sample_indices(len(raw), it.fps or rate, rate, name=it.name)
        out.append(_Footage(it.name.replace("/", "_"), [raw[i] for i in keep]))
    return out


def _check_motion(videos: list[_Footage]) -> None:
    best = 0.0
    for v in videos:
        prev = None
        for f in v.frames:
            g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if f.ndim == 3 and f.shape[2] == 3 else f.squeeze()
            if prev is not None:
                best = max(best, float(np.mean(cv2.absdiff(g, prev) > MOTION_LEVEL)))
            prev = g
    if best < MOTION_FRACTION:
        raise DataError(
            f"no motion in the footage: between consecutive frames at most {best:.2%} of the pixels "
            f"change by more than {MOTION_LEVEL} grey levels (needs {MOTION_FRACTION:.2%}); a "
            f"frame-prediction model learns nothing from a still picture"
        )


def _config(family: str, preset: str, overrides: Optional[dict], base_dir: Optional[Path]) -> dict:
    from vadedge.train.checkpoint import read_config
    from vadedge.train.registry import resolve_config

    if base_dir is not None:
        cfg = read_config(base_dir)
        return {"name": cfg["name"], "preset": cfg.get("preset"), "model": cfg["model"], "train": cfg["train"]}
    return resolve_config(family, preset, overrides, {"epochs": 1})


def _write(videos: list[_Footage], root: Path) -> None:
    for v in videos:
        d = root / v.name
        d.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(v.frames):
            cv2.imwrite(str(d / f"{i:05d}.png"), f)


@dataclass
class _Trained:
    epochs: float
    steps: int
    seconds: float
    val_loss: float
    interrupted: bool
    history: list


def _train(
    cfg: dict,
    train_root: Path,
    held_root: Path,
    ckpt: Path,
    base_dir: Optional[Path],
    budget_s: float,
    max_epochs: Optional[int],
    device: str,
    seed: int,
    threads: Optional[int],
    report: Progress,
) -> _Trained:
    """Train until the budget (or `max_epochs`) is spent, the learning rate on a cosine over whichever is
    nearer, validating after each epoch
    (and at the end); the checkpoint with the lowest validation loss is kept in `ckpt`. Ctrl-C stops early."""
    import torch

    from vadedge.datasets import open_split

    from .checkpoint import save_checkpoint
    from .data import ClipDataset
    from .protocols import StreamModel
    from .trainer import _setup

    if threads:
        torch.set_num_threads(threads)
    t0 = time.monotonic()
    run = _setup(cfg["name"], cfg, train_root, seed=seed, stage=None, init=base_dir, workers=0)
    run.net.to(device)
    run.task.load_state({k: v.to(device) for k, v in run.task.state().items()})
    net = run.net
    assert isinstance(net, StreamModel)  # every registered family is (train/registry.py checks it)
    val_set = ClipDataset(open_split(held_root, "training"), net.spec, net.clip_length)
    idx = np.unique(np.linspace(0, len(val_set) - 1, min(VALIDATION_CLIPS, len(val_set))).astype(int))
    val_loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(val_set, idx.tolist()), batch_size=cfg["train"]["batch_size"], shuffle=False
    )
    lr0 = cfg["train"]["lr"]
    best, history, step, epoch, interrupted = math.inf, [], 0, 0.0, False

    def validate() -> float:
        saved = {k: v.detach().clone() for k, v in run.task.state().items()}
        run.net.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for batch in val_loader:
                _, logs = run.task.training_step(_to(batch, device))
                total, n = total + logs["loss"], n + 1
        run.task.load_state(saved)
        run.net.train()
        return total / max(1, n)

    def keep_if_best(loss: float) -> None:
        nonlocal best
        history.append(
            {"epoch": round(epoch, 2), "step": step, "val_loss": loss, "seconds": round(time.monotonic() - t0, 1)}
        )
        if loss < best:
            best = loss
            save_checkpoint(ckpt, run.net, run.task.state(), {**cfg, "history": history})
        report.info(
            f"epoch {epoch:.2f}: validation loss {loss:.5f} (best {best:.5f}) "
            f"[{(time.monotonic() - t0) / 60:.1f} / {budget_s / 60:.1f} min]"
        )

    run.net.train()
    bar = report.bar(total=int(budget_s), desc="fit (s)")
    shown = done = 0
    try:
        out_of_time = False
        while not out_of_time:
            done = 0
            for batch in run.loader:
                used = (time.monotonic() - t0) / budget_s
                if max_epochs:
                    used = max(used, (epoch + done / run.steps_per_epoch) / max_epochs)
                if used >= 1.0:
                    out_of_time = True
                    break
                for g in run.opt.param_groups:
                    g["lr"] = lr0 * 0.5 * (1.0 + math.cos(math.pi * used))
                loss, logs = run.task.training_step(_to(batch, device))
                if not math.isfinite(loss.item()):
                    raise ConfigError(f"loss became {loss.item()} at step {step}; the footage may be degenerate")
                run.opt.zero_grad(set_to_none=True)
                loss.backward()
                run.opt.step()
                step, done = step + 1, done + 1
                now = min(int(budget_s), int(time.monotonic() - t0))
                bar.update(now - shown)
                shown = now
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            epoch += done / run.steps_per_epoch
            finished, done = done, 0
            if finished:
                keep_if_best(validate())
    except KeyboardInterrupt:
        interrupted = True
        epoch += done / run.steps_per_epoch  # the partial epoch
        logger.warning("interrupted: keeping the best checkpoint so far")
        if math.isinf(best):
            keep_if_best(validate())
    finally:
        bar.close()
    return _Trained(epoch, step, time.monotonic() - t0, best, interrupted, history)


def _to(batch: Any, device: str) -> Any:
    if device == "cpu":
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch.to(device) if hasattr(batch, "to") else batch


def _finish(
    out: Path,
    ckpt: Path,
    trained: _Trained,
    rate: float,
    precision: str,
    train_root: Path,
    held_root: Path,
    held_part: list[_Footage],
    train_part: list[_Footage],
    target: float,
    threads: Optional[int],
    progress: bool,
    report: Progress,
) -> FitReport:
    """Export, calibrate on the held-out part, load the bundle and replay the held-out part through it."""
    from vadedge.bundle import load_bundle, save_bundle
    from vadedge.calibration.recalibrate import calibrate_bundle, with_local
    from vadedge.export.exporter import ExportOptions, export_bundle

    report.info(f"exporting ({precision}) ...")
    export_bundle(
        ckpt,
        out,
        ExportOptions(
            precision=precision,
            calib_data=train_root if precision == "int8" else None,
            score_data=False,
            fps=rate,
            threads=threads,
            progress=progress,
        ),
    )
    b = with_local(load_bundle(out))  # the local error components next to the graph's own
    save_bundle(out, b.manifest, b.state)
    held_dirs = [held_root / "training" / "frames" / v.name for v in held_part]
    report.info("calibrating on the held-out part (component selection, statistics, threshold) ...")
    try:
        sel = calibrate_bundle(
            out,
            held_dirs,
            in_place=True,
            target=SELECT_TARGET,
            fps=rate,
            threads=threads,
            select=True,
            progress=progress,
        )
    except DataError as exc:
        if "degenerate" not in str(exc):
            raise
        raise DataError(
            f"{exc}; the model trained {trained.epochs:.1f} epochs ({trained.steps} steps): give it "
            f"a larger --budget-min"
        ) from None
    # the weights stay the selection's; statistics + threshold are re-fitted at `target` on every held-out
    # video, since between-video offsets are the main spread of normal scores and one video under-states them
    cal = calibrate_bundle(out, held_dirs, in_place=True, target=target, fps=rate, threads=threads, progress=progress)
    events, seconds = _replay(out, held_part, rate)
    assert sel.selection is not None  # select=True
    return FitReport(
        out,
        rate,
        sum(len(v.frames) for v in train_part),
        sum(len(v.frames) for v in held_part),
        [v.name for v in train_part],
        [v.name for v in held_part],
        trained.epochs,
        trained.steps,
        trained.seconds,
        trained.val_loss,
        float(cal.calibration.threshold["on"]),
        events,
        seconds,
        events / (seconds / 3600.0),
        sel.selection.weights,
        sel.selection.dropped,
        trained.interrupted,
        trained.history,
    )


def _clip_length(bundle: Path) -> int:
    from vadedge.bundle import load_bundle

    return load_bundle(bundle).clip_length


def _replay(bundle: Path, videos: list[_Footage], rate: float) -> tuple[int, float]:
    """Events the bundle raises on `videos` (each a fresh stream, as `vadedge run` scores them)."""
    from vadedge.runtime.detector import Detector

    det = Detector.load(bundle, heatmap=False)
    events, seconds = 0, 0.0
    try:
        for v in videos:
            stream = det.stream(v.name)
            for i, f in enumerate(v.frames):
                events += stream.process(f, timestamp=i / rate).event_started is not None
            stream.finish()
            seconds += len(v.frames) / rate
    finally:
        det.close()
    return events, seconds
