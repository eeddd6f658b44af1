"""Fuzz the SDK's frame inputs: Detector.process / process_many with generated frames (dtype, shape,
strides, values incl. NaN) and timestamps (numbers, NaN, inf, strings, objects).

Contract: a call either raises a vadedge error with a message and leaves every stream exactly as it
was, or returns the correct result — the same result a clean reference stream gives when it is fed
only the accepted frames as contiguous copies. Never another exception type, never a changed stream
after an error.
"""

from __future__ import annotations

import itertools
import math
import numbers

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.errors import VadedgeError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402

_IDS = itertools.count()
DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]


@pytest.fixture(scope="module")
def detectors(tmp_path_factory):
    """A detector under test and a reference one, on the same dynamic-batch toy bundle; events on."""
    bundle = make_toy_bundle(
        tmp_path_factory.mktemp("fuzz") / "toy",
        batch="dynamic",
        threshold=(0.5, 0.2),
        calibration={"psnr": {"location": 30.0, "scale": 5.0}, "feature_distance": {"location": 0.1, "scale": 0.1}},
    )
    det, ref = Detector.load(bundle), Detector.load(bundle)
    yield det, ref
    det.close()
    ref.close()


@st.composite
def frames(draw):
    """Mostly plausible frames (uint8, H x W [x C]) with mutations: other dtypes, odd shapes, views
    with negative / non-unit strides, transposes, NaN / inf for floats."""
    dtype = draw(st.sampled_from([np.uint8] * 6 + DTYPES))
    ndim = draw(st.sampled_from([2, 3, 3, 3, 0, 1, 4]))
    side = st.integers(0, 48) if draw(st.booleans()) else st.sampled_from([1, 8, 32])
    shape = tuple(draw(side) for _ in range(ndim))
    if ndim == 3 and draw(st.booleans()):
        shape = shape[:2] + (draw(st.sampled_from([1, 3, 4])),)
    arr = draw(hnp.arrays(dtype, shape))  # float elements include NaN and ±inf
    view = draw(st.sampled_from(["none"] * 4 + ["reverse", "step", "transpose", "fortran"]))
    if arr.ndim >= 2:
        if view == "reverse":
            arr = arr[::-1]
        elif view == "step":
            arr = arr[:, ::2]
        elif view == "transpose":
            arr = np.swapaxes(arr, 0, 1)
        elif view == "fortran":
            arr = np.asfortranarray(arr)
    return arr


TIMESTAMPS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
    st.sampled_from(["1.5", "abc", b"1", [1.0], object()]),
)


def _finite_seconds(ts) -> bool:
    """What the SDK accepts as a timestamp: a finite real number (not text)."""
    if not isinstance(ts, numbers.Real):
        return False
    try:
        return math.isfinite(float(ts))
    except OverflowError:
        return False


def _snapshot(det: Detector, name: str):
    h = det.stream(name)
    return h.frame_index, h.frame_shape, {k: v.copy() for k, v in h.state.items()}


def _same_result(a, b) -> None:
    assert (a.frame_index, a.warmup, a.is_anomaly) == (b.frame_index, b.warmup, b.is_anomaly)
    assert (a.event_started is None) == (b.event_started is None) and (a.event_ended is None) == (b.event_ended is None)
    if a.score is None:
        assert b.score is None
    else:
        assert a.score == b.score or (math.isnan(a.score) and math.isnan(b.score))
        assert a.components == b.components


@st.composite
def sequences(draw):
    """A stream: mostly good frames of one resolution (so clips fill and get scored), some fuzzed."""
    shape = draw(st.sampled_from([(32, 32, 3), (24, 40), (48, 36, 4), (32, 32, 1)]))
    good = hnp.arrays(np.uint8, shape)
    step = st.one_of(good, good, good, frames())
    times = st.one_of(st.none(), st.none(), st.floats(-1e6, 1e6), TIMESTAMPS)
    return draw(st.lists(st.tuples(step, times), min_size=draw(st.sampled_from([1, 6])), max_size=14))


@given(seq=sequences())
def test_process_accepts_or_rejects_cleanly_and_stays_correct(detectors, seq):
    det, ref = detectors
    name = f"s{next(_IDS)}"  # a fresh stream on both detectors
    for frame, ts in seq:
        before = _snapshot(det, name)
        try:
            r = det.stream(name).process(frame, ts)
        except VadedgeError as exc:
            event(f"rejected: {type(exc).__name__}")
            assert str(exc)
            after = _snapshot(det, name)
            assert after[:2] == before[:2]
            for k in before[2]:
                np.testing.assert_array_equal(after[2][k], before[2][k])
            continue
        event("accepted" + (" (scored)" if r.score is not None else ""))
        assert ts is None or _finite_seconds(ts), f"timestamp {ts!r} was accepted"
        expected = ref.stream(name).process(np.ascontiguousarray(frame), ts)
        _same_result(r, expected)
        if ts is not None:
            assert r.timestamp == float(ts)
    det.stream(name).finish()
    ref.stream(name).finish()


@given(batch=st.lists(frames(), min_size=1, max_size=4), ts=TIMESTAMPS)
def test_process_many_is_all_or_nothing(detectors, batch, ts):
    det, _ = detectors
    names = [f"m{next(_IDS)}" for _ in batch]
    warm = np.zeros((32, 32, 3), np.uint8)
    det.process_many(dict.fromkeys(names, warm))  # every stream has a frame shape and an index
    before = [_snapshot(det, n) for n in names]
    try:
        out = det.process_many(dict(zip(names, batch)), {names[0]: ts})
    except VadedgeError as exc:
        assert str(exc)
        for n, b in zip(names, before):
            after = _snapshot(det, n)
            assert after[:2] == b[:2]
        return
    assert set(out) == set(names)
    assert all(out[n].frame_index == b[0] + 1 for n, b in zip(names, before))
