"""Causal scoring on crafted sequences: calibration + fusion, EMA, hysteresis, minimum event length."""

from __future__ import annotations

import math

import pytest

from vadedge.bundle import ScoreSpec
from vadedge.errors import ConfigError
from vadedge.runtime.scoring import CausalScorer, EventTracker, ScoreRecipe
from vadedge.scoring import ema


def run(tracker: EventTracker, scores):
    flags, started, ended = [], [], []
    for t, s in enumerate(scores):
        f, st, en = tracker.update(t, t / 10, s)
        flags.append(f)
        if st:
            started.append((t, st))
        if en:
            ended.append((t, en))
    return flags, started, ended


def test_hysteresis_keeps_one_event_through_dips_between_off_and_on():
    scores = [0, 0, 3.5, 2.5, 3.2, 2.1, 2.6, 1.0, 0, 3.1, 0]
    flags, started, ended = run(EventTracker("s", on=3.0, off=2.0), scores)
    assert [t for t, _ in started] == [2, 9]
    (t_end, e0), (t_end2, e1) = ended
    assert (e0.start_frame, e0.end_frame, e0.frames, t_end) == (2, 6, 5, 7)
    assert e0.peak_score == 3.5 and e0.peak_frame == 2 and e0.reason == "score"
    assert math.isclose(e0.start_time, 0.2) and math.isclose(e0.end_time, 0.6)
    assert (e1.start_frame, e1.end_frame) == (9, 9)
    assert flags == [False, False, True, True, True, True, True, False, False, True, False]
    assert e0.id == 0 and e1.id == 1


def test_without_hysteresis_the_same_sequence_flickers():
    scores = [0, 0, 3.5, 2.5, 3.2, 2.1, 2.6, 1.0, 0, 3.1, 0]
    _, started, _ = run(EventTracker("s", on=3.0, off=3.0), scores)
    assert [t for t, _ in started] == [2, 4, 9]


def test_minimum_length_drops_short_spikes_and_dates_events_back():
    scores = [0, 5, 5, 0, 0, 5, 5, 5, 5, 0]
    flags, started, ended = run(EventTracker("s", on=3.0, off=2.0, min_frames=3), scores)
    assert len(started) == 1 and len(ended) == 1
    t_start, ev = started[0]
    assert t_start == 7 and ev.start_frame == 5 and ev.is_open  # confirmed on its 3rd frame
    assert ended[0][1].end_frame == 8 and ended[0][1].frames == 4
    assert flags == [False] * 7 + [True, True, False]  # the 2-frame spike never raised a flag


def test_event_open_at_stream_end_is_closed_with_reason():
    tr = EventTracker("cam", on=1.0, off=0.5)
    run(tr, [0, 2, 2, 2])
    assert tr.open_event is not None
    ev = tr.close("interrupted")
    assert (ev.start_frame, ev.end_frame, ev.reason, ev.stream) == (1, 3, "interrupted", "cam")
    assert tr.close() is None  # nothing open any more


def test_nan_scores_never_start_or_prolong_events():
    flags, started, ended = run(EventTracker("s", on=1.0, off=0.5), [float("nan"), 2, float("nan"), 0])
    assert [t for t, _ in started] == [1] and ended[0][1].end_frame == 1


def test_recipe_fuses_calibrated_components_with_signs():
    score = {
        "signs": {"psnr": -1, "fd": 1},
        "weights": {"psnr": 0.6, "fd": 0.4},
        "calibration": {"psnr": {"location": 30.0, "scale": 2.0}, "fd": {"location": 0.1, "scale": 0.05}},
        "smoothing": 0.5,
        "threshold": {"on": 2.0, "off": 1.0},
        "min_event_frames": 2,
    }
    r = ScoreRecipe.from_manifest(ScoreSpec.from_dict(score))
    # psnr 26 -> z = -2 -> oriented +2; fd 0.2 -> z = +2
    assert math.isclose(r.fuse({"psnr": 26.0, "fd": 0.2}), 0.6 * 2 + 0.4 * 2)
    assert (r.on, r.off, r.min_event_frames, r.smoothing) == (2.0, 1.0, 2, 0.5)
    o = ScoreRecipe.from_manifest(ScoreSpec.from_dict(score), threshold=5.0, smoothing=1.0, min_event_frames=1)
    assert (o.on, o.off, o.smoothing, o.min_event_frames) == (5.0, 5.0, 1.0, 1)
    uncal = ScoreRecipe.from_manifest(ScoreSpec.from_dict({**score, "calibration": None, "threshold": None}))
    assert uncal.fuse({"psnr": 26.0, "fd": 0.2}) == pytest.approx(-0.6 * 26 + 0.4 * 0.2)
    assert not uncal.has_threshold


def test_scorer_smooths_causally_like_metrics_ema():
    recipe = ScoreRecipe({"x": 1}, {"x": 1.0}, smoothing=0.3, on=100.0, off=50.0)
    sc = CausalScorer(recipe, "s")
    xs = [0.0, 10.0, 0.0, 4.0, 8.0]
    got = [sc.update(i, 0.0, {"x": x})[0] for i, x in enumerate(xs)]
    assert got == pytest.approx(list(ema(xs, 0.3)))
    raws = [CausalScorer(recipe, "s").update(0, 0.0, {"x": x})[1] for x in xs]
    assert raws == xs


@pytest.mark.parametrize(
    "kw",
    [
        dict(smoothing=0.0),
        dict(min_event_frames=0),
        dict(on=1.0, off=2.0),
        dict(on=1.0),
        dict(calibration={"x": (0.0, 0.0)}),
    ],
)
def test_recipe_rejects_bad_values(kw):
    with pytest.raises(ConfigError):
        ScoreRecipe({"x": 1}, {"x": 1.0}, **kw)
