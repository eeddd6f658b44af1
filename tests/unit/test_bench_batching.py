"""`python -m vadedge.bench.batching` (batched vs per-stream calls) and `Detector.remove_stream`, which it uses."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bench.batching import compare_batching, main  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_bundle(tmp_path_factory.mktemp("b") / "toy", batch="dynamic", height=32, width=48)


def test_compare_batching_measures_both_modes(toy, capsys):
    described, per_stream, batched = compare_batching(toy, streams=2, steps=3, rounds=1, threads=1)
    assert per_stream > 0 and batched > 0 and "batch dynamic" in described
    main([str(toy), "--streams", "2", "--steps", "2", "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "one call per stream" in out and "speed-up" in out


def test_remove_stream_forgets_it_and_closes_its_event(toy):
    det = Detector.load(toy, backend="onnxruntime", threshold=(-1e9, -1e9), min_event_frames=1)
    ended = []
    det.on_event(ended.append, when="end")
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), np.uint8)
    for f in frames:
        det.stream("cam").process(f)
    assert "cam" in det.streams
    event = det.remove_stream("cam")
    assert "cam" not in det.streams
    assert event is not None and event.reason == "stream_end" and ended == [event]
    assert det.stream("cam").frame_index == -1  # a new stream of the same name starts fresh


def test_profile_bundle_sums_kernel_time_by_op_type(toy):
    from vadedge.bench.profile import format_profile, profile_bundle

    p = profile_bundle(toy, calls=4, warmup=1, threads=1)
    assert p["runs_profiled"] == 5 and p["calls"] == 4  # warm-up calls are traced, not timed
    assert p["wall_ms"] > 0 and p["kernel_ms"] > 0 and "ReduceMean" in p["ops"]
    assert "outside kernels" in format_profile(p)
