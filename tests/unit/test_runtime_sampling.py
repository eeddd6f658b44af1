"""The temporal contract: which frames the sampler keeps, the slow-source warning, sources and the manifest field."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from vadedge.bundle import DEFAULT_FPS, BundleError, InputSection, validate_manifest
from vadedge.errors import ConfigError
from vadedge.runtime.sampling import FrameSampler, sample_indices
from vadedge.runtime.sources import open_source


@pytest.mark.parametrize(
    "source_fps, kept",
    [
        (30, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]),  # every 3rd frame
        (25, [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]),  # 2.5 on average, by timestamp accumulation
        (15, [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24, 26, 27, 29]),
        (10, list(range(30))),  # the trained rate: all
        (5, list(range(30))),  # slower: all (none invented)
    ],
)
def test_sampler_keeps_a_uniform_stride_in_time(source_fps, kept):
    assert sample_indices(30, source_fps, 10).tolist() == kept


def test_sampler_keeps_the_target_rate_over_a_long_run():
    """Non-integer ratios do not drift: 25 -> 10 fps keeps 400 of 1000 frames (40 s at 10 fps)."""
    assert len(sample_indices(1000, 25, 10)) == 400
    assert len(sample_indices(999, 29.97, 10)) == pytest.approx(999 / 2.997, abs=1)


def test_sampler_tolerates_timestamp_jitter():
    """A live 30 fps camera with +-4 ms jitter on its timestamps still gives one frame per 0.1 s."""
    rng = np.random.default_rng(0)
    s = FrameSampler(10)
    times = np.arange(300) / 30 + rng.uniform(-0.004, 0.004, 300)
    kept = [t for t in times if s.keep(float(t))]
    assert len(kept) == 100
    gaps = np.diff(kept)
    assert gaps.min() > 0.08 and gaps.max() < 0.12


def test_a_gap_restarts_the_grid_instead_of_a_burst():
    s = FrameSampler(10)
    kept = [t for t in [0.0, 0.1, 0.2, 5.0, 5.0333, 5.0667, 5.1, 5.1333] if s.keep(t)]
    assert kept == [0.0, 0.1, 0.2, 5.0, 5.1]


def test_a_slower_source_warns_once(caplog):
    with caplog.at_level(logging.WARNING, logger="vadedge.runtime.sampling"):
        s = FrameSampler(10, name="cam")
        for i in range(100):  # 5 fps by timestamps
            assert s.keep(i / 5)
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "cam delivers 5 frames/s" in msgs[0] and "every frame is scored" in msgs[0]


def test_a_faster_or_equal_source_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="vadedge.runtime.sampling"):
        sample_indices(100, 30, 10)
        sample_indices(100, 10, 10)
    assert not caplog.records


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_rates_are_config_errors(bad):
    with pytest.raises(ConfigError):
        FrameSampler(bad)


def test_sources_sample_in_the_decoder_thread():
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(30)]
    with open_source(((f, i / 30) for i, f in enumerate(frames)), sample_fps=10) as src:
        got = [(f.index, int(f.image[0, 0, 0])) for f in src]
    assert [i for i, _ in got] == list(range(0, 30, 3)) and src.skipped == 20
    assert src.output_fps == 10


def test_a_frames_folder_without_fps_runs_at_the_sampling_rate(tmp_path):
    import cv2

    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((8, 8, 3), i, np.uint8))
    with open_source(tmp_path, sample_fps=10) as src:
        assert len(list(src)) == 12 and src.skipped == 0
    with open_source(tmp_path, fps=20, sample_fps=10) as src:  # --fps says it is a 20 fps sequence
        assert [f.index for f in src] == list(range(0, 12, 2))


def _doc(**inp):
    return {
        "schema_version": 1,
        "family": "x",
        "input": {"height": 32, "width": 32, "color": "gray", "frames": 4, "clip_length": 5, **inp},
        "graph": {"batch": 1, "frames_input": "frames", "state": [], "params": [], "scores": {"a": "a"}},
        "models": {"fp32": "m.onnx"},
        "state_file": "state.npz",
        "score": {"signs": {"a": 1}, "weights": {"a": 1.0}},
        "provenance": {"vadedge_version": "0"},
    }


def test_manifest_fps_round_trips_and_defaults_to_the_ped2_rate():
    m = validate_manifest(_doc(fps=30))
    assert m.input.fps == 30 and m.input.frame_rate == 30
    assert json.loads(json.dumps(m.to_dict()))["input"]["fps"] == 30
    old = validate_manifest(_doc())
    assert old.input.fps is None and old.input.frame_rate == DEFAULT_FPS == 10
    assert "fps" not in old.to_dict()["input"]
    assert InputSection(32, 32, "gray", 4, 5).frame_rate == 10


@pytest.mark.parametrize("bad", [0, -5, 1e6, "10", True])
def test_manifest_refuses_bad_fps(bad):
    with pytest.raises(BundleError, match="fps"):
        validate_manifest(_doc(fps=bad))


def test_the_shipped_bundle_records_its_rate():
    from vadedge.bundle import load_bundle
    from vadedge.runtime.defaults import default_bundle

    assert load_bundle(default_bundle()).manifest.input.fps == 10


def test_info_shows_the_frame_rate(tmp_path):
    from vadedge.export.exporter import describe
    from vadedge.runtime.defaults import default_bundle

    assert "clip of 5, 10 fps\n" in describe(default_bundle())
