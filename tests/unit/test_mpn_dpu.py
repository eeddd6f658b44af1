"""MPN's Dynamic Prototype Unit against a plain loop implementation of the paper's equations."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vadedge.train.memory import l2_normalize  # noqa: E402
from vadedge.train.models.mpn import MPN  # noqa: E402
from vadedge.train.models.mpn_dpu import DynamicPrototypeUnit, compactness_loss, diversity_loss, prototype_formation  # noqa: E402
from vadedge.train.registry import create_model, resolve_config  # noqa: E402


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def reference_dpu(x: np.ndarray, weight: np.ndarray) -> dict:
    """One frame x (C, h, w): Eq. 1–2 with the code's choices (softmax over positions, normalised
    prototypes, softmax retrieval, normalised read-out), then the residual; losses per the code."""
    c = x.shape[0]
    q = x.reshape(c, -1).T  # (N, C)
    q = np.stack([v / np.linalg.norm(v) for v in q])
    n_pos, m_num = q.shape[0], weight.shape[0]
    protos = []
    for m in range(m_num):
        w = _softmax(np.array([weight[m] @ q[n] for n in range(n_pos)]))
        p = sum(w[n] * q[n] for n in range(n_pos))
        protos.append(p / np.linalg.norm(p))
    protos = np.stack(protos)
    out, compact = np.zeros_like(q), 0.0
    for n in range(n_pos):
        beta = _softmax(np.array([q[n] @ protos[m] for m in range(m_num)]))
        r = sum(beta[m] * protos[m] for m in range(m_num))
        out[n] = q[n] + r / np.linalg.norm(r)
        compact += np.mean((q[n] - protos[int(np.argmax(beta))]) ** 2)
    pairs = [max(0.0, 1.0 - np.sum((protos[i] - protos[j]) ** 2)) for i in range(m_num) for j in range(i + 1, m_num)]
    return {
        "out": out.T.reshape(x.shape),
        "protos": protos,
        "compact": compact / n_pos,
        "diversity": float(np.mean(pairs)),
    }


def test_dpu_matches_loop_reference():
    torch.manual_seed(0)
    dpu = DynamicPrototypeUnit(6, prototypes=4).double()
    x = torch.randn(2, 6, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        d = dpu(x)
        compact = [compactness_loss(d.query[i : i + 1], d.prototypes[i : i + 1]).item() for i in range(2)]
        diversity = [diversity_loss(d.prototypes[i : i + 1]).item() for i in range(2)]
    for i in range(2):
        ref = reference_dpu(x[i].numpy(), dpu.weight.detach().numpy())
        np.testing.assert_allclose(d.out[i].numpy(), ref["out"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(d.prototypes[i].numpy(), ref["protos"], rtol=1e-10, atol=1e-12)
        assert compact[i] == pytest.approx(ref["compact"], rel=1e-10)
        assert diversity[i] == pytest.approx(ref["diversity"], rel=1e-10, abs=1e-12)


def test_gate_zero_bypasses_the_unit():
    torch.manual_seed(1)
    dpu = DynamicPrototypeUnit(4, 3)
    x = torch.randn(1, 4, 2, 2)
    out = dpu(x, torch.zeros(())).out
    assert torch.allclose(out, l2_normalize(x, dim=1), atol=1e-6)


def test_prototypes_are_softmax_weighted_means_of_queries():
    # weight = 0 → uniform attention → every prototype is the normalised mean query.
    q = l2_normalize(torch.randn(1, 7, 3))
    p = prototype_formation(q, torch.zeros(2, 3))
    mean = l2_normalize(q.mean(1, keepdim=True))
    assert torch.allclose(p, mean.expand(-1, 2, -1), atol=1e-6)


def test_diversity_loss_zero_for_orthogonal_and_one_for_identical():
    eye = torch.eye(3).unsqueeze(0)
    assert diversity_loss(eye).item() == pytest.approx(0.0)  # ‖e_i − e_j‖² = 2 ≥ 1
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert diversity_loss(same).item() == pytest.approx(1.0)
    assert diversity_loss(torch.ones(1, 1, 4)).item() == 0.0  # a single prototype has no pair


@pytest.mark.parametrize("tap", [1, 2, 4, 8])
def test_configurable_tap_shapes_and_adaptable_set(tap):
    m = create_model("mpn", "edge-xs", height=32, width=32, dpu_tap=tap).eval()
    frames = torch.randint(0, 256, (2, 5, 32, 32, 1), dtype=torch.uint8)
    context, _ = m.split_clip(frames)
    x, _ = m.backbone(context)
    assert x.shape[-1] == 32 // tap and x.shape[1] == m.dpu.weight.shape[1]
    out = m.stream_step(frames, {})
    assert set(out["scores"]) == {"psnr", "feature_distance"} and out["scores"]["psnr"].shape == (2,)
    assert out["state"] == {} and m.initial_state() == {}
    names = m.adaptable_names
    assert names[0] == "dpu.weight" and all(n.startswith(("dpu.", "decoder.")) for n in names)
    assert not any(n.startswith("encoder.") for n in names)
    assert ("decoder.head.0.weight" in names) and (("decoder.stage2.0.weight" in names) == (tap >= 2))
    assert set(m.alphas()) == set(names)
    assert all(m.alphas()[n].shape == p.shape for n, p in m.adaptable_parameters().items())


def test_full_resolution_tap_is_the_decoder_features_output():
    m = create_model("mpn", "edge-xs", height=32, width=32).eval()
    context = torch.rand(1, 4, 32, 32) * 2 - 1
    x, skips = m.backbone(context)
    z, skips2 = m.encoder(context)
    assert torch.equal(x, m.decoder.features(z, skips2))
    m.dpu_gate.fill_(0.0)
    pred, _ = m(x, skips)
    assert torch.allclose(pred, m.decoder.head(l2_normalize(x, dim=1)), atol=1e-6)


def test_presets_registered_and_paper_matches_the_paper():
    paper = resolve_config("mpn", "paper")
    assert paper["model"]["prototypes"] == 10 and paper["model"]["dpu_tap"] == 1
    assert (paper["model"]["height"], paper["model"]["color"], paper["model"]["batchnorm"]) == (256, "rgb", False)
    edge = resolve_config("mpn", "edge-s")["model"]
    assert (edge["height"], edge["width"], edge["color"], edge["width_mult"]) == (128, 128, "gray", 0.25)
    m = MPN(paper["model"])
    assert m.dpu.weight.numel() == 1280  # "1.28 K with 10 prototypes"
