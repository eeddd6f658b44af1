"""Fuzz `vadedge run` options through click's CliRunner: output paths (the source, a bundle file, a
folder, under a file, the same file twice, odd names and extensions) and numeric options (thresholds,
smoothing, fps, frame counts, as arbitrary text incl. nan / inf / 1e999).

Contract: exit 0 with a correct run (every requested output written, the CSV has one row per
frame), or exit 2 with an "Error" message — never a traceback, never a changed input.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import event, given
from hypothesis import strategies as st

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.runtime.sinks import read_events  # noqa: E402
from vadedge.synthetic import write_video  # noqa: E402

FRAMES = 8
_IDS = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-fuzz")
    bundle = make_toy_bundle(root / "toy", threshold=(0.0, 0.0))
    clip = write_video(
        root / "clip.avi", np.random.default_rng(0).integers(0, 255, (FRAMES, 32, 32, 3), np.uint8), fps=10
    )
    (root / "a-folder").mkdir()
    (root / "a-file").write_text("x")
    return root, bundle, clip


def _digest(paths) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


NAME = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=12)
EXT = st.sampled_from([".jsonl", ".csv", ".mp4", ".avi", ".MP4", ".xyz", "", ".mp4.tmp"])
GOOD_KIND = st.sampled_from(["none", "new", "nested"])
BAD_KIND = st.sampled_from(["source", "bundle", "folder", "under-file", "same-as-events"])


@st.composite
def path_kinds(draw):
    """Kinds of the three output paths: good ones, and in half the examples one bad one."""
    kinds = [draw(GOOD_KIND) for _ in range(3)]
    if draw(st.booleans()):
        kinds[draw(st.integers(0, 2))] = draw(BAD_KIND)
    return tuple(kinds)


def _path(kind: str, name: str, ext: str, root: Path, work: Path, bundle: Path, clip: Path, events):
    return {
        "none": None,
        "new": work / (name + ext),
        "nested": work / "a" / "b" / (name + ext),
        "source": clip,
        "bundle": bundle / "model.onnx",
        "folder": root / "a-folder",
        "under-file": root / "a-file" / (name + ext),
        "same-as-events": events,
    }[kind]


JUNK = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10, 40).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "3:2", "2,3", "1:1", "", " ", "1:", ":1", "a", "0x10"]),
    st.text(max_size=6),
)
VALID = {  # plausible values, so that a good share of the runs get through and are checked
    "--threshold": st.sampled_from(["2", "1.5:0.5", "0", "-1,-2"]),
    "--smoothing": st.sampled_from(["1", "0.3", "0.05"]),
    "--fps": st.sampled_from(["10", "0.5", "240"]),
    "--max-frames": st.sampled_from(["1", "3", "100"]),
    "--min-event-frames": st.sampled_from(["1", "2"]),
    "--max-reconnects": st.sampled_from(["0", "3"]),
    "--source-lost-after": st.sampled_from(["0", "1.5"]),
}
NUMBERS = st.fixed_dictionaries({}, optional={o: st.one_of(v, v, v, JUNK) for o, v in VALID.items()})


@given(kinds=path_kinds(), names=st.tuples(NAME, NAME, NAME), exts=st.tuples(EXT, EXT, EXT), numbers=NUMBERS)
def test_run_options_give_a_correct_run_or_a_clear_error(world, kinds, names, exts, numbers):
    root, bundle, clip = world
    work = root / f"w{next(_IDS)}"
    work.mkdir()
    inputs = [clip, *sorted(p for p in bundle.iterdir() if p.is_file())]
    before = _digest(inputs)
    events = _path(kinds[0], names[0], exts[0], root, work, bundle, clip, None)
    scores = _path(kinds[1], names[1], exts[1], root, work, bundle, clip, events)
    video = _path(kinds[2], names[2], exts[2], root, work, bundle, clip, events)
    args = ["run", str(clip), "--model", str(bundle), "--quiet"]
    for opt, p in (("--events", events), ("--scores", scores), ("--save-video", video)):
        if p is not None:
            args += [opt, str(p)]
    for opt, text in numbers.items():
        args += [f"{opt}={text}"]
    res = CliRunner().invoke(cli, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.output)
    assert "Traceback" not in res.output
    assert _digest(inputs) == before, f"an input changed: {args}"
    assert res.exit_code in (0, 2), (args, res.output)
    if res.exit_code == 2:
        event("exit 2: usage error" if "Invalid value" in res.output else "exit 2: refused by vadedge")
        assert "Error" in res.output, (args, res.output)
        return
    event("exit 0")
    assert "processed" in res.output
    n = int(res.output.split("processed ")[1].split()[0])
    if scores is not None:
        rows = list(csv.reader(Path(scores).open()))
        assert len(rows) == n + 1
    if events is not None:
        recs = read_events(events)
        assert [r["type"] for r in recs].count("start") == [r["type"] for r in recs].count("end")
    if video is not None:
        assert Path(video).stat().st_size > 0
