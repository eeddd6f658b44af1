"""`StreamRunner.for_torch`: the runner over the torch backend scores an in-memory stream model exactly as a
hand-written torch loop over `model.stream_step` does (the loop `train/evaluate.py::score_frames` used to
be: state kept as tensors, host side inputs from `model.host_inputs`, one `.item()` per component)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vadedge.preprocess import prepare_frame
from vadedge.runtime.runner import StreamRunner
from vadedge.synthetic import SceneGenerator
from vadedge.train import create_model
from vadedge.train.protocols import HostInputs

SIZE = 32
FRAMES = 9
# carried memory (gate forced open), host-computed optical flow, adaptable parameters (run as they are)
FAMILIES = ["mnad-pred", "maam-net", "mpn"]


def _model(family: str):
    torch.manual_seed(0)
    model = create_model(family, "edge-xs", height=SIZE, width=SIZE)
    if hasattr(model, "update_threshold"):
        model.update_threshold = 1e9  # write the memory on every frame, so the carried state matters
    return model.eval()


def _frames(spec, n: int = FRAMES) -> np.ndarray:
    frames, _ = SceneGenerator(SIZE, SIZE, seed=2).render(n, seed=9, anomaly="speed", anomaly_start=n // 2)
    return np.stack([prepare_frame(f, spec) for f in frames])


def _reference(model, state: dict, frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """The torch loop the runner replaces: components per frame and the last state."""
    st = {k: v.unsqueeze(0) for k, v in state.items()}
    n = model.clip_length
    video = torch.from_numpy(frames)
    values: dict[str, list[float]] = {k: [] for k in model.score_components}
    with torch.inference_mode():
        for t in range(n - 1, len(frames)):
            clip = video[t - n + 1 : t + 1].unsqueeze(0)
            host = model.host_inputs(clip) if isinstance(model, HostInputs) else {}
            out = model.stream_step(clip, st, **host)
            st = out["state"]
            for k in values:
                values[k].append(out["scores"][k].item())
    return {k: np.asarray(v) for k, v in values.items()}, st


@pytest.mark.parametrize("family", FAMILIES)
def test_runner_over_torch_equals_the_torch_loop(family):
    model = _model(family)
    state = model.initial_state()
    frames = _frames(model.spec)
    want, last_state = _reference(model, state, frames)
    runner = StreamRunner.for_torch(model, state)
    got = runner.score_frames(frames)
    assert set(got) == set(model.score_components)
    for comp in want:
        assert len(got[comp]) == FRAMES - model.clip_length + 1
        np.testing.assert_array_equal(got[comp], want[comp], err_msg=comp)
    for k, v in state.items():  # the stream really carried a changing state
        assert not torch.equal(last_state[k][0], v), k
    assert runner.initial_state().keys() == state.keys()


def test_default_state_is_the_models_initial_state():
    model = _model("mnad-pred")
    frames = _frames(model.spec)
    a = StreamRunner.for_torch(model).score_frames(frames)
    b = StreamRunner.for_torch(model, model.initial_state()).score_frames(frames)
    for comp in a:
        np.testing.assert_array_equal(a[comp], b[comp])


def test_an_adapted_mpn_scorer_runs_with_its_own_parameters():
    """MPN's `adapt_stream` result (θ' bound, no `params` argument) runs through the runner unchanged."""
    model = _model("mpn")
    frames = _frames(model.spec)
    scorer = model.with_params({k: v.detach() + 0.05 for k, v in model.adaptable_parameters().items()})
    want, _ = _reference(scorer, {}, frames)
    got = StreamRunner.for_torch(scorer, {}).score_frames(frames)
    base = StreamRunner.for_torch(model, {}).score_frames(frames)
    for comp in want:
        np.testing.assert_array_equal(got[comp], want[comp], err_msg=comp)
    assert not np.array_equal(got["psnr"], base["psnr"])
