"""Few-shot adaptation: deterministic, base parameters untouched, = one Meta-SGD step on the mean gradient."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vadedge.errors import DataError  # noqa: E402
from vadedge.train.adapt import adapt  # noqa: E402
from vadedge.train.models.mpn_shifts import SHIFT_KINDS, Shift, parse_shift, sample_shift  # noqa: E402
from vadedge.train.registry import create_model  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = create_model("mpn", "edge-xs", height=32, width=32)
    with torch.no_grad():  # distinct per-parameter step sizes
        for a in m.alphas().values():
            a.uniform_(0.005, 0.05)
    return m


def _clips(k: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (k, 5, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _snapshot(m):
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def test_adapt_is_deterministic_and_leaves_base_untouched(model):
    before = _snapshot(model)
    clips = _clips(3)
    a1 = adapt(model, model.adaptable_parameters(), model.alphas(), clips)
    a2 = adapt(model, model.adaptable_parameters(), model.alphas(), clips.clone())
    assert set(a1) == set(model.adaptable_names)
    assert all(torch.equal(a1[n], a2[n]) for n in a1)
    assert all(not a1[n].requires_grad for n in a1)
    after = _snapshot(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert any(not torch.equal(a1[n], before[n]) for n in a1)
    assert model.training  # mode restored


def test_adapt_is_one_step_on_the_mean_of_per_pair_gradients(model):
    clips = _clips(3, seed=1)
    theta, alphas = model.adaptable_parameters(), model.alphas()
    model.eval()
    grads = []
    for i in range(3):
        leaves = {n: p.detach().clone().requires_grad_(True) for n, p in theta.items()}
        loss = model.adaptation_loss(leaves, model.adaptation_data(clips[i : i + 1]))
        g = torch.autograd.grad(loss, list(leaves.values()))
        grads.append(dict(zip(leaves, g)))
    model.train()
    expected = {n: theta[n].detach() - alphas[n].detach() * sum(g[n] for g in grads) / 3 for n in theta}
    for chunk in (1, 2, 8):
        got = adapt(model, theta, alphas, clips, chunk_size=chunk)
        for n in expected:
            torch.testing.assert_close(got[n], expected[n], rtol=1e-5, atol=1e-7)


def test_k0_returns_copies_and_inference_mode_callers_work(model):
    theta = model.adaptable_parameters()
    same = adapt(model, theta, model.alphas(), _clips(0))
    assert all(torch.equal(same[n], theta[n]) and same[n] is not theta[n] for n in theta)
    with torch.inference_mode():
        out = adapt(model, theta, model.alphas(), _clips(1))
    assert all(torch.isfinite(v).all() for v in out.values())
    with pytest.raises(ValueError):
        adapt(model, theta, model.alphas(), np.zeros((1, 5, 32, 32, 1), np.float32))


def test_explicit_parameters_drive_the_model_function(model):
    model.eval()
    frames = _clips(2, seed=2)
    with torch.no_grad():
        plain = model.stream_step(frames, {})["scores"]
        same = model.stream_step(frames, {}, params=model.adaptable_parameters())["scores"]
        adapted = adapt(model, model.adaptable_parameters(), model.alphas(), _clips(2, seed=3))
        other = model.stream_step(frames, {}, params=adapted)["scores"]
    for k in plain:
        assert torch.equal(plain[k], same[k])
    assert not torch.allclose(plain["psnr"], other["psnr"])
    model.train()


def test_adapt_stream_scores_with_adapted_parameters(model):
    video = _clips(1, seed=4)[0].repeat(3, 1, 1, 1)[:12].numpy()  # 12 frames
    scorer = model.adapt_stream(video, 2)
    assert scorer.clip_length == 5 and scorer.score_components == model.score_components
    clip = torch.from_numpy(video[2:7]).unsqueeze(0)
    with torch.no_grad():
        a = scorer.stream_step(clip, {})["scores"]["psnr"]
        b = model.stream_step(clip, {}, params=scorer.params)["scores"]["psnr"]
    assert torch.equal(a, b)
    assert model.adapt_stream(video, 0).params == {}
    with pytest.raises(DataError):
        model.adapt_stream(video[:6], 3)


@pytest.mark.parametrize("kind", SHIFT_KINDS)
def test_shifts_keep_shape_and_are_deterministic(kind):
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 20, 1), dtype=np.uint8)
    shift = sample_shift(kind, np.random.default_rng(1))
    a, b = shift.apply(frames), shift.apply(frames)
    assert a.shape == frames.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert (kind == "none") == np.array_equal(a, frames)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 16, 20, 3), dtype=np.uint8)
    assert shift.apply(rgb).shape == rgb.shape


def test_parse_shift():
    assert parse_shift("blur") == Shift("blur", (1.5,))
    assert parse_shift("brightness_contrast:-30") == Shift("brightness_contrast", (-30.0, 1.3))
    assert str(parse_shift("crop:0.7,0,1")) == "crop:0.7,0,1"
    from vadedge.errors import ConfigError

    for bad in ("zoom", "blur:x", "blur:1,2"):
        with pytest.raises(ConfigError):
            parse_shift(bad)
