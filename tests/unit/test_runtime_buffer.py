"""Ring buffer of preprocessed frames: warm-up, clip views, compaction, reset; detector warm-up."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes.bundles import make_toy_bundle
from vadedge.errors import DataError
from vadedge.runtime.buffer import FrameRing

pytest.importorskip("onnx")


@pytest.fixture
def toy_bundle_factory(tmp_path):
    def make(**kw):
        return make_toy_bundle(tmp_path / f"toy{len(list(tmp_path.iterdir()))}", **kw)

    return make


def frame(i: int, shape=(4, 6, 1)) -> np.ndarray:
    return np.full(shape, i % 256, np.uint8)


def test_warmup_then_clip_in_order():
    ring = FrameRing(5, (4, 6, 1))
    for i in range(4):
        ring.push(frame(i))
        assert not ring.ready and ring.missing == 4 - i
        with pytest.raises(DataError):
            ring.clip()
    ring.push(frame(4))
    assert ring.ready and ring.missing == 0
    assert [int(f[0, 0, 0]) for f in ring.clip()] == [0, 1, 2, 3, 4]


def test_clip_is_a_view_across_compactions():
    ring = FrameRing(3, (4, 6, 1), factor=2)  # 6 slots: compacts often
    for i in range(50):
        ring.push(frame(i))
        if ring.ready:
            clip = ring.clip()
            assert np.shares_memory(clip, ring._buf)
            assert clip.shape == (3, 4, 6, 1)
            assert [int(f[0, 0, 0]) for f in clip] == [i - 2, i - 1, i]
            assert not clip.flags.writeable
    assert ring.compactions > 0


def test_reset_restarts_warmup_and_rejects_wrong_frames():
    ring = FrameRing(2, (4, 6, 1))
    ring.push(frame(1))
    ring.push(frame(2))
    ring.reset()
    assert not ring.ready and ring.missing == 2
    ring.push(frame(7))
    ring.push(frame(8))
    assert [int(f[0, 0, 0]) for f in ring.clip()] == [7, 8]
    with pytest.raises(DataError):
        ring.push(np.zeros((4, 6, 3), np.uint8))
    with pytest.raises(DataError):
        ring.push(np.zeros((4, 6, 1), np.float32))


def test_detector_warmup_results_have_no_score(toy_bundle_factory):
    from vadedge.runtime import Detector

    det = Detector.load(toy_bundle_factory(batch=1))
    rng = np.random.default_rng(0)
    results = [det.process(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(8)]
    n = det.clip_length
    for r in results[: n - 1]:
        assert r.warmup and r.score is None and r.components == {} and not r.is_anomaly
    for r in results[n - 1 :]:
        assert not r.warmup and r.score is not None and set(r.components) == {"psnr", "feature_distance"}
        assert r.heatmap is not None and r.heatmap.shape == (32, 32)
    assert [r.frame_index for r in results] == list(range(8))
    assert det.calls == 8 - (n - 1)
    # each frame was preprocessed once and the clip given to the backend is the ring's view
    h = det.stream("default")
    assert h.ring.ready and h.ring.clip().shape == (n, 32, 32, 1)
