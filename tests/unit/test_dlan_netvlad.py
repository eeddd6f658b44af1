"""DLAN-AC: NetVLAD residual aggregation with ghost clusters vs loops, prototypes, M round trip, losses."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from vadedge.errors import ConfigError  # noqa: E402
from vadedge.train import create_model  # noqa: E402
from vadedge.train.models.dlan_ac import DLANTask, gradient_loss, netvlad_residuals  # noqa: E402
from vadedge.train.registry import resolve_config  # noqa: E402


def test_residual_aggregation_matches_loop():
    g = torch.Generator().manual_seed(0)
    f, c = torch.randn(2, 7, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    beta = torch.softmax(torch.randn(2, 7, 4, generator=g, dtype=torch.float64), -1)
    got = netvlad_residuals(f, beta, c)
    for b in range(2):
        for j in range(4):
            want = sum(beta[b, n, j] * (f[b, n] - c[j]) for n in range(7))
            torch.testing.assert_close(got[b, j], want)


def _model(m: int = 3, clusters: int = 5):
    torch.manual_seed(0)
    return create_model("dlan-ac", "edge-xs", height=32, width=32, num_clusters=clusters, num_prototypes=m).double()


def _loop_prototypes(model, x):
    """Eq. 5–6 written out: β from −α‖x − c‖² (the SOM init), residual sums of the first M clusters,
    intra + global L2 normalisation, the shared FC, then L2 (cosine read)."""
    c, alpha, M = model.centres.detach(), model.alpha, model.num_prototypes
    L, N = c.shape[0], x.shape[0]
    beta = [[math.exp(-alpha * float((x[n] - c[j]).pow(2).sum())) for j in range(L)] for n in range(N)]
    beta = [[v / sum(row) for v in row] for row in beta]
    kept = []
    for j in range(M):  # ghost clusters j >= M are part of the softmax above but dropped here
        v = sum(beta[n][j] * (x[n] - c[j]) for n in range(N))
        kept.append(v / v.norm())
    flat = torch.cat(kept)
    flat = flat / flat.norm()
    protos = []
    for j in range(M):
        p = model.fc(flat[j * c.shape[1] : (j + 1) * c.shape[1]])
        protos.append(p / p.norm())
    return torch.stack(protos)


def test_prototypes_with_ghost_clusters_match_loop():
    model = _model(m=3, clusters=5)
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(5, model.feature_dim, generator=g, dtype=torch.float64)
    model.set_clusters(centres / centres.norm(dim=-1, keepdim=True), 3)
    x = torch.randn(2, 9, model.feature_dim, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        got = model.prototypes(x)
        assert got.shape == (2, 3, model.feature_dim)
        for b in range(2):
            torch.testing.assert_close(got[b], _loop_prototypes(model, x[b]))


def test_ghost_clusters_change_the_assignment_but_not_the_count():
    """Moving a ghost centre onto the features takes mass away from the kept clusters."""
    model = _model(m=2, clusters=4)
    g = torch.Generator().manual_seed(2)
    c = torch.randn(4, model.feature_dim, generator=g, dtype=torch.float64)
    x = torch.randn(1, 6, model.feature_dim, generator=g, dtype=torch.float64)
    model.set_clusters(c, 2)
    with torch.no_grad():
        beta = torch.softmax(model.assign(x), -1)
        c2 = c.clone()
        c2[3] = x[0].mean(0)
        model.set_clusters(c2, 2)
        beta2 = torch.softmax(model.assign(x), -1)
        assert model.prototypes(x).shape[1] == 2
    assert beta2[..., :2].sum() < beta[..., :2].sum()


def test_num_prototypes_round_trips_through_the_state_dict():
    src = _model(m=0)
    assert src.num_prototypes == 0
    src.set_clusters(src.centres.detach(), 4)
    assert src.cfg["num_prototypes"] == 4
    dst = _model(m=0)
    dst.load_state_dict(src.state_dict())
    assert dst.num_prototypes == 4 and dst.cfg["num_prototypes"] == 4
    with pytest.raises(ConfigError):
        dst.set_clusters(dst.centres.detach(), 6)


def test_stream_step_is_stateless_psnr_only():
    model = _model(m=3).float().eval()
    frames = torch.randint(0, 256, (2, 5, 32, 32, 1), dtype=torch.uint8)
    out = model.stream_step(frames, model.initial_state())
    assert out["state"] == {} and model.initial_state() == {}
    assert list(out["scores"]) == ["psnr"] and out["scores"]["psnr"].shape == (2,)
    assert model.score_weights == {"psnr": 1.0} and model.score_components == {"psnr": -1}


def test_gradient_loss_matches_hand_computation():
    t = torch.tensor([[[[0.0, 1.0], [3.0, 3.0]]]])
    p = torch.zeros_like(t)
    # |∂x t| = [1, 0] (mean 0.5), |∂y t| = [3, 2] (mean 2.5); prediction is flat
    assert gradient_loss(p, t).item() == pytest.approx(3.0)
    assert gradient_loss(t, t).item() == 0.0


def test_stages_and_losses():
    cfg = resolve_config("dlan-ac", "edge-xs", {"height": 32, "width": 32, "num_prototypes": 3})
    model = create_model("dlan-ac", "edge-xs", height=32, width=32, num_prototypes=3)
    frames = torch.randint(0, 256, (4, 5, 32, 32, 1), dtype=torch.uint8)
    _, logs = DLANTask(model, cfg["train"], stage="main").training_step(frames)
    assert {"int", "gd", "compact", "separate"} <= set(logs)
    _, logs = DLANTask(model, cfg["train"], stage="ae").training_step(frames)
    assert set(logs) == {"loss", "int", "gd"}
    with pytest.raises(ConfigError):
        DLANTask(model, cfg["train"], stage="meta")


def test_prototype_losses_train_the_aggregation_layers():
    cfg = resolve_config(
        "dlan-ac", "edge-xs", {"height": 32, "width": 32, "num_prototypes": 3}, {"lambda_int": 0.0, "lambda_gd": 0.0}
    )
    model = create_model("dlan-ac", "edge-xs", height=32, width=32, num_prototypes=3)
    loss, _ = DLANTask(model, cfg["train"]).training_step(torch.randint(0, 256, (2, 5, 32, 32, 1), dtype=torch.uint8))
    loss.backward()
    assert model.fc.weight.grad.abs().sum() > 0 and model.centres.grad.abs().sum() > 0


def test_streams_are_independent_in_a_batch():
    model = _model(m=3).float().eval()
    frames = torch.randint(0, 256, (3, 5, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        together = model.stream_step(frames, {})["scores"]["psnr"]
        alone = torch.cat([model.stream_step(frames[i : i + 1], {})["scores"]["psnr"] for i in range(3)])
    torch.testing.assert_close(together, alone)
