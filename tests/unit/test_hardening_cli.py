"""Issue 15 regressions at the CLI: outputs never destroy inputs, disk full / bad paths / malformed
configs are clear errors (exit 2, no traceback), --engine / --plugins on ONNX Runtime warn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.runtime.sinks import read_events  # noqa: E402
from vadedge.synthetic import write_video  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = np.random.default_rng(1).integers(0, 255, (30, 32, 32, 3), np.uint8)
    return write_video(tmp_path_factory.mktemp("clip") / "clip.avi", frames, fps=10)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    # every scored frame is anomalous: an event is open from the first scored frame
    return make_toy_bundle(tmp_path_factory.mktemp("toy") / "toy", threshold=(-1e9, -1e9))


def run(*args):
    return CliRunner().invoke(cli, ["run", *map(str, args), "--quiet"])


def assert_user_error(res, message):
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, (OSError, KeyError))


def test_save_video_equal_to_the_source_is_refused_and_the_source_untouched(clip, bundle):
    before = clip.read_bytes()
    res = run(clip, "--model", bundle, "--save-video", clip)
    assert_user_error(res, "would overwrite the input")
    assert clip.read_bytes() == before


def test_outputs_inside_the_bundle_are_refused(clip, bundle):
    model = bundle / "model.onnx"
    before = model.read_bytes()
    assert_user_error(run(clip, "--model", bundle, "--scores", model), "would overwrite the input")
    assert model.read_bytes() == before


def test_events_equal_to_scores_is_refused_before_opening_anything(clip, bundle, tmp_path):
    out = tmp_path / "same.txt"
    out.write_text("keep me")
    assert_user_error(run(clip, "--model", bundle, "--events", out, "--scores", out), "are the same file")
    assert out.read_text() == "keep me"
    # the same file under two spellings
    assert_user_error(
        run(clip, "--model", bundle, "--events", out, "--scores", tmp_path / "." / "same.txt"), "are the same file"
    )


def test_unsupported_video_extension_fails_before_other_outputs_are_truncated(clip, bundle, tmp_path):
    ev, sc = tmp_path / "ev.jsonl", tmp_path / "sc.csv"
    ev.write_text("old events\n")
    sc.write_text("old scores\n")
    res = run(clip, "--model", bundle, "--events", ev, "--scores", sc, "--save-video", tmp_path / "out.xyz")
    assert_user_error(res, "unsupported extension")
    assert ev.read_text() == "old events\n" and sc.read_text() == "old scores\n"


def test_save_video_under_a_file_is_a_clear_error(clip, bundle, tmp_path):
    parent = tmp_path / "afile"
    parent.write_text("x")
    assert_user_error(run(clip, "--model", bundle, "--save-video", parent / "v.mp4"), "is a file, not a folder")
    assert_user_error(run(clip, "--model", bundle, "--events", tmp_path), "is a folder")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_on_events_is_a_clear_error_and_later_sinks_are_closed(clip, bundle, tmp_path):
    scores = tmp_path / "scores.csv"
    res = run(clip, "--model", bundle, "--events", "/dev/full", "--scores", scores)
    assert_user_error(res, "cannot write events to /dev/full")
    assert "No space left" in res.output
    rows = scores.read_text().splitlines()  # the CSV after the failing event log was still finalised
    assert rows[0].startswith("stream,frame") and len(rows) > 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_on_scores_is_a_clear_error_and_events_are_closed(clip, bundle, tmp_path):
    events = tmp_path / "ev.jsonl"
    res = run(clip, "--model", bundle, "--scores", "/dev/full", "--events", events)
    assert_user_error(res, "cannot write scores to /dev/full")
    recs = read_events(events)
    assert recs and recs[-1]["type"] == "end"  # the open event was still closed and written


def test_demo_out_an_existing_file(bundle, tmp_path):
    out = tmp_path / "demo-out"
    out.write_text("not a folder")
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--model", str(bundle), "--synthetic", "-q"])
    assert_user_error(res, "is a file")
    assert out.read_text() == "not a folder"


def test_engine_and_plugins_on_onnxruntime_warn(clip, bundle, tmp_path, caplog):
    lib = tmp_path / "libplugins.so"
    lib.write_bytes(b"")
    with caplog.at_level("WARNING", logger="vadedge.runtime.detector"):
        res = run(
            clip,
            "--model",
            bundle,
            "--backend",
            "onnxruntime",
            "--device",
            "cpu",
            "--engine",
            tmp_path / "x.engine",
            "--plugins",
            lib,
            "--max-frames",
            "3",
        )
    assert res.exit_code == 0, res.output
    text = caplog.text
    assert "x.engine is ignored" in text and "plugin libraries are ignored" in text


def test_export_with_a_malformed_model_section_is_a_checkpoint_error(tmp_path):
    pytest.importorskip("torch")
    from train.checkpoint import CONFIG_FILE, FORMAT, MODEL_FILE, STATE_FILE

    for section in ({}, [1, 2], {"height": "tall"}):
        ckpt = tmp_path / f"ckpt{len(list(tmp_path.iterdir()))}"
        ckpt.mkdir()
        (ckpt / CONFIG_FILE).write_text(json.dumps({"format": FORMAT, "name": "mnad-pred", "model": section}))
        (ckpt / MODEL_FILE).write_bytes(b"")
        (ckpt / STATE_FILE).write_bytes(b"")
        res = CliRunner().invoke(
            cli, ["export", str(ckpt), "--out", str(tmp_path / "b"), "--quiet", "--no-score-calibration"]
        )
        assert_user_error(res, "'model'")
        assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "opt, value",
    [
        ("--threshold", "nan"),
        ("--threshold", "inf:1"),
        ("--threshold", "1e999"),
        ("--smoothing", "nan"),
        ("--fps", "inf"),
        ("--source-lost-after", "nan"),
    ],
)
def test_non_finite_numbers_are_usage_errors(clip, bundle, opt, value):
    res = run(clip, "--model", bundle, opt, value)
    assert res.exit_code == 2 and "finite" in res.output, res.output


def test_a_symlink_or_hard_link_to_an_input_is_refused(clip, bundle, tmp_path):
    link = tmp_path / "link.avi"
    link.symlink_to(clip)
    before = clip.read_bytes()
    assert_user_error(run(clip, "--model", bundle, "--save-video", link), "would overwrite the input")
    hard = tmp_path / "hard.csv"
    hard.write_text("a")
    (tmp_path / "hard2.csv").hardlink_to(hard)
    assert_user_error(
        run(clip, "--model", bundle, "--events", hard, "--scores", tmp_path / "hard2.csv"), "are the same file"
    )
    assert clip.read_bytes() == before and hard.read_text() == "a"


def test_every_float_option_of_every_command_refuses_non_finite_numbers():
    """click.FloatRange lets NaN through its comparisons: every float range option uses FiniteFloatRange."""
    import click

    from vadedge.commands._params import FiniteFloatRange

    loose = [
        f"{name} {p.name}"
        for name, cmd in cli.commands.items()
        for p in cmd.params
        if isinstance(p.type, click.FloatRange) and not isinstance(p.type, FiniteFloatRange)
    ]
    assert not loose, f"float options that accept NaN: {loose}"


@pytest.mark.parametrize(
    "args", [["export", "--smoothing", "nan"], ["export", "--target-far", "nan"], ["train", "--lr", "nan"]]
)
def test_non_finite_numbers_are_usage_errors_in_export_and_train(args):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "finite" in res.output, res.output
