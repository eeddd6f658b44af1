"""Meta-SGD machinery: exact second-order gradients on a quadratic, and one MPN meta step on a toy batch."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vadedge.train.meta import episode_loss, inner_step, meta_batch_loss  # noqa: E402
from vadedge.train.models.mpn import MPNTask  # noqa: E402
from vadedge.train.registry import get_model_entry, resolve_config  # noqa: E402


def quad(params, c):
    return ((params["w"] - c) ** 2).sum()


def test_inner_step_is_theta_minus_alpha_times_grad():
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    a = torch.tensor([0.1, 0.3], requires_grad=True)
    c = torch.tensor([0.5, 0.5])
    new, loss = inner_step(quad, {"w": w}, {"w": a}, c)
    assert torch.allclose(new["w"], w - a * 2 * (w - c))
    assert loss.item() == pytest.approx(((w - c) ** 2).sum().item())


def test_meta_gradient_is_second_order():
    """L_out(θ'), θ' = θ − α·2(θ − c_s): dL/dθ = 2(θ' − c_q)(1 − 2α), dL/dα = −4(θ' − c_q)(θ − c_s)."""
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    a = torch.tensor([0.1, 0.3], requires_grad=True)
    cs, cq = torch.tensor([0.5, 0.0]), torch.tensor([-1.0, 2.0])
    outer, _ = episode_loss(quad, {"w": w}, {"w": a}, cs, cq)
    outer.backward()
    with torch.no_grad():
        wp = w - a * 2 * (w - cs)
        assert torch.allclose(w.grad, 2 * (wp - cq) * (1 - 2 * a))
        assert torch.allclose(a.grad, -4 * (wp - cq) * (w - cs))
    # first order drops the (1 − 2α) factor
    w.grad = a.grad = None
    outer, _ = episode_loss(quad, {"w": w}, {"w": a}, cs, cq, second_order=False)
    outer.backward()
    with torch.no_grad():
        assert torch.allclose(w.grad, 2 * (wp - cq))


def test_meta_batch_loss_averages_episodes():
    w = torch.tensor([0.0], requires_grad=True)
    a = torch.tensor([0.25])
    eps = [(torch.tensor([1.0]), torch.tensor([2.0])), (torch.tensor([-1.0]), torch.tensor([0.0]))]
    outer, inner = meta_batch_loss(quad, {"w": w}, {"w": a}, eps)
    # θ' = 0.5·c_s → outer = mean((0.5 − 2)², (−0.5 − 0)²)
    assert outer.item() == pytest.approx((2.25 + 0.25) / 2)
    assert inner.item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        meta_batch_loss(quad, {"w": w}, {"w": a}, [])


def _meta_task(seed: int = 0):
    cfg = resolve_config("mpn", "edge-xs", {"height": 32, "width": 32})
    torch.manual_seed(seed)
    model = get_model_entry("mpn").build(cfg["model"])
    task = MPNTask(model, dict(cfg["train"]), stage="meta")
    task.prepare(None)
    return model, task


def _toy_batch():
    g = torch.Generator().manual_seed(3)
    base = torch.randint(0, 256, (2, 1, 5, 32, 32, 1), dtype=torch.uint8, generator=g)
    noise = torch.randint(0, 20, (2, 4, 5, 32, 32, 1), dtype=torch.uint8, generator=g)
    clips = base.expand(-1, 4, -1, -1, -1, -1) // 2 + noise  # 2 episodes × 4 related clips
    return {"support": clips[:, :2].contiguous(), "query": clips[:, 2:].contiguous()}


def test_one_meta_step_changes_alpha_and_theta_and_lowers_outer_loss():
    model, task = _meta_task()
    batch = _toy_batch()
    frozen = {
        n: p.detach().clone()
        for n, p in model.named_parameters()
        if n.startswith("encoder.") or n.startswith("decoder.stage")
    }
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    theta = {n: p.detach().clone() for n, p in model.adaptable_parameters().items()}
    alpha = {n: p.detach().clone() for n, p in model.alphas().items()}
    opt = torch.optim.Adam(task.trainable_parameters(), lr=1e-3)
    loss0, logs = task.training_step(batch)
    assert set(logs) >= {"loss", "inner", "query_unadapted", "alpha_abs_mean"}
    opt.zero_grad()
    loss0.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.alphas().values())
    opt.step()
    loss1, _ = task.training_step(batch)
    assert loss1.item() < loss0.item()
    assert all(not torch.equal(theta[n], p) for n, p in model.adaptable_parameters().items())
    assert all(not torch.equal(alpha[n], p) for n, p in model.alphas().items())
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
    assert all(torch.equal(buffers[n], b) for n, b in model.named_buffers())  # BN statistics frozen


def test_stage_parameter_sets():
    cfg = resolve_config("mpn", "edge-xs", {"height": 32, "width": 32})
    model = get_model_entry("mpn").build(cfg["model"])
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    alphas = ids(model.meta_alpha.parameters())
    pre = ids(MPNTask(model, dict(cfg["train"]), stage="pretrain").trainable_parameters())
    dpu = ids(MPNTask(model, dict(cfg["train"]), stage="dpu").trainable_parameters())
    meta = ids(MPNTask(model, dict(cfg["train"]), stage="meta").trainable_parameters())
    assert not pre & alphas and id(model.dpu.weight) not in pre
    assert id(model.dpu.weight) in dpu and not dpu & alphas
    assert meta == ids(model.adaptable_parameters().values()) | alphas
    task = MPNTask(model, dict(cfg["train"]), stage="pretrain")
    task.prepare(None)
    assert float(model.dpu_gate) == 0.0 and model.score_weights["feature_distance"] == 0.0


def test_per_stage_values_resolved_and_cli_overrides_win():
    cfg = resolve_config("mpn", "edge-s")
    model = get_model_entry("mpn").build(cfg["model"])
    tcfg = dict(cfg["train"])
    MPNTask(model, tcfg, stage="meta")
    assert tcfg["epochs"] == cfg["train"]["epochs"]["meta"] and tcfg["batch_size"] == 8
    tcfg = {**cfg["train"], "epochs": 3}
    MPNTask(model, tcfg, stage="dpu")
    assert tcfg["epochs"] == 3
    from vadedge.errors import ConfigError

    with pytest.raises(ConfigError):
        MPNTask(model, dict(cfg["train"]), stage="finetune")


class _FakeClips:
    """ClipDataset stand-in: video v's frame t has every pixel = 10·v + t (so clips identify themselves)."""

    clip_length = 5

    def __init__(self, frames_per_video=(12, 12, 7)):
        self.videos = list(range(len(frames_per_video)))
        self.index = [(v, s) for v, n in enumerate(frames_per_video) for s in range(n - self.clip_length + 1)]

    def __getitem__(self, i):
        v, s = self.index[i]
        t = torch.arange(s, s + self.clip_length, dtype=torch.uint8) + 10 * v
        return t.view(-1, 1, 1, 1).expand(-1, 4, 4, 1).clone()


def test_episode_loader_draws_k_shot_episodes_from_single_videos():
    from vadedge.train.models.mpn import EpisodeLoader

    ds = _FakeClips()
    loader = EpisodeLoader(ds, episodes=3, shots=2, batches=4, shifts=["none"], seed=0)
    batches = list(loader)
    assert len(loader) == 4 and len(batches) == 4
    for b in batches:
        assert b["support"].shape == (3, 2, 5, 4, 4, 1) and b["query"].shape == (3, 2, 5, 4, 4, 1)
        firsts = torch.cat([b["support"], b["query"]], 1)[:, :, 0, 0, 0, 0].long()  # (episodes, 2K)
        videos = firsts // 10
        assert (videos == videos[:, :1]).all()  # every clip of an episode from one video
        assert all(len(set(row.tolist())) == 4 for row in firsts)  # 2K distinct windows
        assert set(videos[:, 0].tolist()) <= {0, 1}  # video 2 has only 3 clips (< 2K): never drawn
    again = list(EpisodeLoader(ds, episodes=3, shots=2, batches=4, shifts=["none"], seed=0))
    assert all(torch.equal(a["support"], b["support"]) for a, b in zip(batches, again))
    from vadedge.errors import DataError

    with pytest.raises(DataError):
        EpisodeLoader(ds, episodes=1, shots=5, batches=1, shifts=["none"], seed=0)
