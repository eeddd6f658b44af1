"""Lai et al.: write rule, trace-ratio loss and feature distance against plain-loop references; model wiring."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vadedge.errors import ConfigError  # noqa: E402
from vadedge.train import create_model  # noqa: E402
from vadedge.train.memory import l2_normalize  # noqa: E402
from vadedge.train.models.lai import (  # noqa: E402
    LaiTask,
    lai_memory_delta,
    lai_memory_update,
    nearest_item_distance,
    trace_ratio_loss,
)
from vadedge.train.registry import resolve_config  # noqa: E402


def _unit(*shape, seed=0):
    return l2_normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def _loop_update(q, m, rule):
    """Eq. 11–12 with explicit sums: v_ij = e^{d_ij} / Σ_i' e^{d_i'j}, m_j ← f(m_j + Σ_i v_ij z_i)."""
    K, N = q.shape[0], m.shape[0]
    d = [[float(q[i] @ m[j]) for j in range(N)] for i in range(K)]
    nearest = [max(range(N), key=lambda j: d[i][j]) for i in range(K)]
    out = m.clone()
    for j in range(N):
        denom = sum(torch.exp(torch.tensor(d[i][j])) for i in range(K))
        delta = torch.zeros_like(m[j])
        for i in range(K):
            if rule == "assigned" and nearest[i] != j:
                continue
            delta += torch.exp(torch.tensor(d[i][j])) / denom * q[i]
        new = m[j] + delta
        out[j] = new / new.norm()
    return out


@pytest.mark.parametrize("rule", ["paper", "assigned"])
def test_write_rule_matches_loop(rule):
    q, m = _unit(2, 7, 5, seed=1), _unit(2, 4, 5, seed=2)
    got = lai_memory_update(q, m, rule)
    for b in range(2):
        torch.testing.assert_close(got[b], _loop_update(q[b], m[b], rule))


def test_unknown_write_rule_is_a_config_error():
    with pytest.raises(ConfigError):
        lai_memory_delta(_unit(1, 3, 2), _unit(1, 2, 2), "sometimes")


def test_paper_rule_collapses_items_assigned_rule_keeps_them():
    """Why `write_rule` defaults to "assigned": with similar queries, the paper's rule (every query
    writes to every item, summed over a batch) pulls all items onto the mean query in one write."""
    gen = torch.Generator().manual_seed(3)
    base = l2_normalize(torch.randn(16, generator=gen))
    q = l2_normalize(base + 0.2 * torch.randn(8, 30, 16, generator=gen))  # 8 frames of similar queries
    m = _unit(1, 20, 16, seed=4).float()
    mean_cos = lambda x: ((x @ x.T).sum() - len(x)) / (len(x) ** 2 - len(x))  # noqa: E731
    paper = l2_normalize(m[0] + lai_memory_delta(q, m.expand(8, -1, -1), "paper").sum(0))
    assigned = l2_normalize(m[0] + lai_memory_delta(q, m.expand(8, -1, -1), "assigned").sum(0))
    assert mean_cos(paper) > 0.95
    assert mean_cos(assigned) < 0.3
    untouched = (assigned - m[0]).norm(dim=-1) < 1e-6
    used = torch.zeros(20, dtype=torch.bool)
    used[(q @ m[0].T).argmax(-1).flatten()] = True
    assert torch.equal(untouched, ~used) and untouched.any()  # items no query is nearest to keep their value


def _loop_trace_ratio(z, m):
    """Eq. 13–17 with the scatter matrices built explicitly (checks the trace identity too)."""
    K, N = z.shape[0], m.shape[0]
    assign = [int((m @ z[i]).argmax()) for i in range(K)]
    counts = [assign.count(j) for j in range(N)]
    mbar = m.mean(0)
    sb = sum(counts[j] / K * torch.outer(m[j] - mbar, m[j] - mbar) for j in range(N))
    sw = torch.zeros(z.shape[1], z.shape[1], dtype=z.dtype)
    for j in range(N):
        members = [z[i] for i in range(K) if assign[i] == j]
        sw += counts[j] / K * sum((torch.outer(x - m[j], x - m[j]) for x in members), torch.zeros_like(sw))
    return torch.trace(sw) / torch.trace(sb)


def test_trace_ratio_loss_matches_loop():
    z, m = _unit(3, 9, 6, seed=5), _unit(3, 4, 6, seed=6)
    got = trace_ratio_loss(z, m)
    want = torch.stack([_loop_trace_ratio(z[b], m[b]) for b in range(3)])
    torch.testing.assert_close(got, want)


def test_trace_ratio_gradient_reaches_items():
    z, m = _unit(2, 9, 6, seed=7), _unit(2, 4, 6, seed=8).requires_grad_()
    trace_ratio_loss(z, m).sum().backward()
    assert m.grad is not None and m.grad.abs().sum() > 0


def test_feature_distance_matches_loop():
    z, m = _unit(2, 5, 3, seed=9), _unit(2, 4, 3, seed=10)
    got = nearest_item_distance(z, m)
    for b in range(2):
        want = sum(float((z[b, i] - m[b, int((m[b] @ z[b, i]).argmax())]).norm()) for i in range(5)) / 5
        assert got[b].item() == pytest.approx(want)


def _tiny_model_and_task(**train):
    cfg = resolve_config("lai", "edge-xs", {"height": 32, "width": 32, "memory_size": 6}, train)
    torch.manual_seed(0)
    model = create_model("lai", "edge-xs", height=32, width=32, memory_size=6)
    return model, LaiTask(model, cfg["train"])


def _clips(b=2):
    return torch.randint(0, 256, (b, 5, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_stream_step_is_stateless_and_never_runs_the_diff_decoder():
    model, _ = _tiny_model_and_task()
    model.eval()
    calls = []
    model.diff_decoder.register_forward_hook(lambda *a: calls.append(1))
    out = model.stream_step(_clips(), model.initial_state())
    assert out["state"] == {} and model.initial_state() == {}
    assert set(out["scores"]) == set(model.score_components) == {"psnr", "feature_distance"}
    assert all(v.shape == (2,) for v in out["scores"].values())
    assert calls == []
    assert model.score_weights == {"psnr": pytest.approx(0.6), "feature_distance": pytest.approx(0.4)}


def test_read_replaces_the_query_as_the_memory_read_contract():
    """Prediction = decoder(read) with read = softmax(q̂·mᵀ)·m, q̂ the L2-normalised encoder output."""
    model, _ = _tiny_model_and_task()
    model.eval()
    frames = _clips()
    context = frames[:, :4].float().permute(0, 1, 4, 2, 3).reshape(2, 4, 32, 32) / 127.5 - 1
    with torch.no_grad():
        z, skips = model.encoder(context)
        q = z.flatten(2).transpose(1, 2)
        q = q / q.norm(dim=-1, keepdim=True)
        m = model.memory / model.memory.norm(dim=-1, keepdim=True)
        read = torch.softmax(q @ m.T, -1) @ m
        want = model.decoder(read.transpose(1, 2).reshape(2, -1, 4, 4), skips)
        got, _, _ = model(context)
    torch.testing.assert_close(got, want)


def test_training_step_defers_the_write_and_state_flushes_it():
    model, task = _tiny_model_and_task()
    before = model.memory.detach().clone()
    loss, logs = task.training_step(_clips(4))
    loss.backward()
    assert {"pred", "diff", "dis"} <= set(logs)
    torch.testing.assert_close(model.memory.detach(), before)  # not written yet: backward used these items
    pending = task.pending.clone()
    assert task.state() == {}
    torch.testing.assert_close(model.memory.detach(), l2_normalize(l2_normalize(before) + pending))
    assert task.pending is None


@pytest.mark.parametrize(
    "mode,lambda_dis,expect_grad", [("none", 1.0, False), ("dis", 1.0, True), ("dis", 0.0, False), ("all", 0.0, True)]
)
def test_item_gradient_modes(mode, lambda_dis, expect_grad):
    model, task = _tiny_model_and_task(item_grad=mode, lambda_dis=lambda_dis)
    loss, _ = task.training_step(_clips(2))
    loss.backward()
    got = model.memory.grad is not None and model.memory.grad.abs().sum().item() > 0
    assert got == expect_grad


def test_bad_item_grad_mode_is_a_config_error():
    with pytest.raises(ConfigError):
        _tiny_model_and_task(item_grad="sometimes")


def test_streams_are_independent_in_a_batch():
    model, _ = _tiny_model_and_task()
    model.eval()
    frames = _clips(3)
    with torch.no_grad():
        together = model.stream_step(frames, {})["scores"]
        alone = [model.stream_step(frames[i : i + 1], {})["scores"] for i in range(3)]
    for k in together:
        torch.testing.assert_close(together[k], torch.cat([a[k] for a in alone]))
