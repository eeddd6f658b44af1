"""Logging: the library logs and never prints; the CLI maps -v/-q to levels on every subcommand and
OpenCV / FFmpeg follow. No timing is asserted."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vadedge.cli import cli
from vadedge.commands._logging import DEFAULT, QUIET, VERBOSE, console_logging
from vadedge.progress import Progress, progress_bar

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ("vadedge", "train", "export", "calibration")
CLI_LAYER = (ROOT / "vadedge" / "cli.py", ROOT / "vadedge" / "commands")


def _commands(group: click.Group, path: str = "vadedge"):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{path} {name}")
        else:
            yield f"{path} {name}", cmd


def test_every_subcommand_takes_v_and_q():
    seen = 0
    for path, cmd in _commands(cli):
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        assert {"-v", "--verbose", "-q", "--quiet"} <= opts, path
        seen += 1
    assert seen >= 10  # train, eval, models, export (bundle, build-plugins), info, synth, run, demo, bench


def test_q_and_v_exclude_each_other(tmp_path):
    res = CliRunner().invoke(cli, ["synth", str(tmp_path / "d"), "-q", "-v"])
    assert res.exit_code == 2 and "exclude each other" in res.output


def _print_calls(path: Path) -> list[int]:
    """Line numbers of print() calls, except inside main()/_main() of a module run as a script."""
    tree = ast.parse(path.read_text(), str(path))
    script = "__main__" in path.read_text()
    allowed: set[int] = set()
    if script:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("main", "_main"):
                allowed |= {n.lineno for n in ast.walk(node) if hasattr(n, "lineno")}
    return [
        n.lineno
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print" and n.lineno not in allowed
    ]


def test_no_print_below_the_cli_layer():
    offenders = []
    for pkg in LIBRARY:
        for path in (ROOT / pkg).rglob("*.py"):
            if path == CLI_LAYER[0] or CLI_LAYER[1] in path.parents:
                continue
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in _print_calls(path)]
    assert not offenders, f"print() below the CLI layer (use logging / vadedge.progress): {offenders}"


def test_the_print_finder_finds_prints(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text(
        "def f():\n    print('x')\n\ndef main():\n    print('ok')\n\nif __name__ == '__main__':\n    main()\n"
    )
    assert _print_calls(bad) == [2]


def test_progress_logs_at_info_or_debug_and_bars_stay_off_the_console(caplog, capsys):
    log = logging.getLogger("vadedge.test_progress")
    with caplog.at_level(logging.DEBUG, logger="vadedge.test_progress"):
        Progress(log, True).info("step %d", 1)
        Progress(log, False).info("nested step")
        items = list(progress_bar(range(3), total=3, desc="x"))  # not a terminal: a silent bar
    assert items == [0, 1, 2]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "step 1"),
        (logging.DEBUG, "nested step"),
    ]
    assert capsys.readouterr() == ("", "")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from tests.fakes.bundles import make_toy_bundle

    return make_toy_bundle(tmp_path_factory.mktemp("log") / "toy", batch="dynamic", height=32, width=32)


BENCH = [
    "--backends",
    "ort-fp32",
    "--streams",
    "0",
    "--rss-frames",
    "0",
    "--settle",
    "0",
    "--frames",
    "6",
    "--rounds",
    "1",
    "--sgemm-n",
    "64",
]


def test_library_call_prints_nothing_and_logs_its_steps(toy, tmp_path, capsys, caplog):
    from vadedge.bench import BenchConfig, run_bench

    with caplog.at_level(logging.INFO, logger="vadedge"):
        run_bench(
            BenchConfig(
                model=str(toy),
                backends="ort-fp32",
                frames=6,
                rounds=1,
                streams=0,
                rss_frames=0,
                sgemm_n=64,
                settle=0.0,
                workdir=str(tmp_path / "w"),
            )
        )
    assert capsys.readouterr() == ("", "")
    assert any(r.name == "vadedge.bench.core" and r.getMessage().startswith("round 1/1") for r in caplog.records)


@pytest.mark.parametrize("flags", [[], ["-q"], ["-v"], ["--verbose"]])
def test_bench_verbosity(toy, tmp_path, flags):
    res = CliRunner().invoke(cli, ["bench", "--model", str(toy), *BENCH, "--workdir", str(tmp_path), *flags])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "ort-fp32" in out  # the result table, whatever the level
    if flags == ["-q"]:
        assert "round 1/1" not in out and "DEBUG" not in out
    elif not flags:  # INFO as plain text, no debug
        assert "\nround 1/1" in "\n" + out and "DEBUG" not in out and "opened video file" not in out
    else:  # -v: levels and logger names, debug included
        assert "INFO vadedge.bench.core: round 1/1" in out
        assert "DEBUG vadedge.runtime.sources: opened video file" in out


def test_run_verbosity(toy, tmp_path):
    from vadedge.synthetic import SceneGenerator, write_video

    frames, _ = SceneGenerator(32, 32, seed=1).render(12, seed=1)
    clip = tmp_path / "clip.avi"
    write_video(clip, frames, fps=10)
    args = ["run", str(clip), "--model", str(toy), "--backend", "onnxruntime"]
    loud = CliRunner().invoke(cli, [*args, "-v"])
    plain = CliRunner().invoke(cli, args)
    quiet = CliRunner().invoke(cli, [*args, "-q"])
    assert loud.exit_code == plain.exit_code == quiet.exit_code == 0, (loud.output, plain.output, quiet.output)
    assert "DEBUG vadedge.runtime.sources: opened video file" in loud.output
    assert "opened video file" not in plain.output and "opened video file" not in quiet.output
    assert "model: " in plain.output and "model: " not in quiet.output  # the CLI's own status lines follow -q


def test_opencv_and_ffmpeg_follow_the_level(monkeypatch):
    pytest.importorskip("cv2")
    from cv2.utils import logging as cv2

    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)
    before = cv2.getLogLevel()
    with console_logging(DEFAULT):
        assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "-8" and os.environ["OPENCV_LOG_LEVEL"] == "ERROR"
        assert cv2.getLogLevel() == 2  # no OpenCV warnings at the default level
    with console_logging(QUIET):
        assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "-8"
    with console_logging(VERBOSE):
        assert cv2.getLogLevel() == 3 and "OPENCV_FFMPEG_LOGLEVEL" not in os.environ  # FFmpeg's own default
    assert "OPENCV_FFMPEG_LOGLEVEL" not in os.environ and cv2.getLogLevel() == before  # restored
    monkeypatch.setenv("OPENCV_FFMPEG_LOGLEVEL", "32")  # the user's choice wins
    with console_logging(QUIET):
        assert os.environ["OPENCV_FFMPEG_LOGLEVEL"] == "32"
