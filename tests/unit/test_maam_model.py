"""MAAM-Net model: layout vs the paper, the flow side input, stream_step protocol, training task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadedge.datasets import open_split
from vadedge.errors import ConfigError
from vadedge.train import create_model
from vadedge.train.data import ClipDataset
from vadedge.train.flops import count_parameters
from vadedge.train.models.maam_net import FlowClipDataset, MAAMTask, feature_sizes
from vadedge.train.registry import get_model_entry, resolve_config


def _clip(model, batch=2, seed=0):
    s = model.spec
    g = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (batch, model.clip_length, s.height, s.width, s.channels), dtype=torch.uint8, generator=g
    )


def test_paper_layout_matches_table_1():
    """240×360 gray, N = 500: 8.45 M parameters (paper: 8.5 M), 15×23 bottleneck, exact output sizes."""
    m = create_model("maam-net", "paper").eval()
    assert count_parameters(m) == pytest.approx(8.5e6, rel=0.01)
    assert feature_sizes(240) == [240, 120, 60, 30, 15] and feature_sizes(360)[-1] == 23
    x = torch.zeros(1, 1, 240, 360)
    with torch.no_grad():
        out = m(x)
    assert out["recon"].shape == (1, 1, 240, 360) and out["flow"].shape == (1, 2, 240, 360)
    assert out["z"].shape == (1, 15 * 23, 512) and out["w"].shape == (1, 345, 500)
    assert m.shrink_lambda == pytest.approx(1 / 500)
    assert not any(isinstance(mod, torch.nn.MaxPool2d) for mod in m.modules())


@pytest.mark.parametrize("preset", ["edge-xs", "edge-s", "edge-m"])
def test_edge_presets_build_and_score(preset):
    m = create_model("maam-net", preset).eval()
    assert (m.spec.height, m.spec.width, m.spec.color) in {(96, 96, "gray"), (128, 192, "gray"), (192, 192, "gray")}
    frames = _clip(m)
    with torch.no_grad():
        out = m.stream_step(frames, {})
    assert set(out["scores"]) == set(m.score_components) == {"pscd", "pscd_app", "pscd_mot"}
    assert all(v.shape == (2,) for v in out["scores"].values())
    assert out["state"] == {} and m.initial_state() == {}
    assert out["aux"]["error_map"].shape == (2, *m.pscd_cfg.grid((m.spec.height, m.spec.width)))
    assert sum(m.score_weights.values()) == 1.0


def test_flow_is_a_host_input_and_matches_the_eager_fallback():
    m = create_model("maam-net", "edge-xs").eval()
    frames = _clip(m)
    flow = m.host_inputs(frames)["flow"]
    spec = m.side_inputs["flow"]
    assert tuple(flow.shape) == (2, *spec["shape"]) and flow.dtype == torch.float32
    assert spec["provider"] == m.flow_provider.config() == {"name": "dis", "preset": "ultrafast", "finest_scale": 1}
    np.testing.assert_array_equal(flow[1, 0].numpy(), m.flow_provider(frames[1, 0].numpy(), frames[1, 1].numpy()))
    with torch.no_grad():
        a = m.stream_step(frames, {}, flow=flow)
        b = m.stream_step(frames, {})
    for k in a["scores"]:
        torch.testing.assert_close(a["scores"][k], b["scores"][k])


def test_flow_changes_the_motion_score_only():
    m = create_model("maam-net", "edge-xs").eval()
    frames = _clip(m)
    flow = m.host_inputs(frames)["flow"]
    with torch.no_grad():
        a = m.stream_step(frames, {}, flow=flow)["scores"]
        b = m.stream_step(frames, {}, flow=flow + 5.0)["scores"]
    torch.testing.assert_close(a["pscd_app"], b["pscd_app"])
    assert (b["pscd_mot"] > a["pscd_mot"]).all()


def test_missing_flow_under_export_is_an_error(monkeypatch):
    m = create_model("maam-net", "edge-xs").eval()
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    with pytest.raises(ConfigError, match="flow"):
        m.stream_step(_clip(m), {})


def test_provider_is_part_of_the_config():
    m = create_model("maam-net", "edge-xs", flow={"name": "farneback"})
    assert m.side_inputs["flow"]["provider"]["name"] == "farneback"
    with pytest.raises(ConfigError):
        create_model("maam-net", "edge-xs", flow={"name": "flownet2"})
    with pytest.raises(ConfigError):
        create_model("maam-net", "edge-xs", pscd_patch=[200, 8])


def test_flow_dataset_cached_equals_on_the_fly(synthetic_root):
    m = create_model("maam-net", "edge-xs")
    split = open_split(synthetic_root, "training")
    split.videos = split.videos[:2]
    base = ClipDataset(split, m.spec, m.clip_length)
    cached = FlowClipDataset(base, m.flow_provider, progress=False)
    assert cached.flows is not None and len(cached.flows) == 2
    lazy = FlowClipDataset(base, m.flow_provider, progress=False)
    lazy.flows = None
    for i in (0, 17, len(base) - 1):
        a, b = cached[i], lazy[i]
        assert a["frames"].shape == (2, 96, 96, 1) and a["flow"].shape == (1, 96, 96, 2)
        torch.testing.assert_close(a["flow"], b["flow"])
        torch.testing.assert_close(a["frames"], b["frames"])


def _task(preset="edge-xs", **train_over):
    cfg = resolve_config("maam-net", preset, None, train_over)
    entry = get_model_entry("maam-net")
    torch.manual_seed(0)
    model = entry.build(cfg["model"])
    return model, entry.task(model, cfg["train"])


def test_training_step_logs_and_learns():
    model, task = _task()
    assert isinstance(task, MAAMTask)
    frames = _clip(model, batch=4)
    batch = {"frames": frames, "flow": model.host_inputs(frames)["flow"]}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss, logs = task.training_step(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert set(logs) == {"loss", "app", "mot", "spa", "lat", "items", "cos"}
    assert 1 <= logs["items"] <= model.memory_size
    assert losses[-1] < losses[0]
    assert model.memory.grad is not None and model.memory.grad.abs().sum() > 0


def test_pscd_scale_tracks_eval_mode_errors():
    model, task = _task(scale_every=1, scale_momentum=0.5)
    frames = _clip(model, batch=3)
    batch = {"frames": frames, "flow": model.host_inputs(frames)["flow"]}
    model.train()
    task.update_scale(batch)
    assert model.training  # restored
    model.eval()
    model.pscd_normalize = False
    with torch.no_grad():
        raw = model.stream_step(frames, {}, flow=batch["flow"])["scores"]
    first = torch.stack([raw["pscd_app"].mean(), raw["pscd_mot"].mean()])
    torch.testing.assert_close(model.pscd_scale, first)
    task.update_scale({"frames": frames, "flow": batch["flow"] + 1.0})
    with torch.no_grad():
        raw2 = model.stream_step(frames, {}, flow=batch["flow"] + 1.0)["scores"]
    torch.testing.assert_close(
        model.pscd_scale, 0.5 * first + 0.5 * torch.stack([raw2["pscd_app"].mean(), raw2["pscd_mot"].mean()])
    )
    model.pscd_normalize = True
    with torch.no_grad():
        norm = model.stream_step(frames, {}, flow=batch["flow"])["scores"]
    torch.testing.assert_close(norm["pscd_app"], raw["pscd_app"] / model.pscd_scale[0])
    assert "pscd_scale" in model.state_dict()  # saved with the weights


def test_unknown_latent_form_is_rejected():
    with pytest.raises(ConfigError):
        _task(latent_form="orthogonal")
