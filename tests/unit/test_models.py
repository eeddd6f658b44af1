"""Registry, presets, model shapes, checkpoints and the streaming contract of MNAD."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vadedge import ConfigError  # noqa: E402
from vadedge.train import create_model, list_models  # noqa: E402
from vadedge.train.flops import count_parameters, gmac_per_frame  # noqa: E402
from vadedge.train.models.mnad import MNADTask  # noqa: E402
from vadedge.train.registry import resolve_config  # noqa: E402


def test_registry_names_and_errors():
    assert {"mnad-pred", "mnad-recon"} <= set(list_models())
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("nope")
    with pytest.raises(ConfigError, match="no preset"):
        create_model("mnad-pred", "huge")
    with pytest.raises(ConfigError, match="unknown model option"):
        resolve_config("mnad-pred", "edge-s", {"bogus": 1})


def test_paper_preset_size_and_cost():
    """The published MNAD-P: ≈15.6 M parameters and ≈46 GMAC per 256×256 frame."""
    model = create_model("mnad-pred", "paper")
    assert count_parameters(model) == pytest.approx(15.65e6, rel=0.01)
    assert gmac_per_frame(model) == pytest.approx(46.5, rel=0.02)


def test_paper_preset_forward_and_training_step():
    model = create_model("mnad-pred", "paper")
    cfg = resolve_config("mnad-pred", "paper")
    task = MNADTask(model, cfg["train"], torch.Generator().manual_seed(0))
    frames = torch.randint(0, 256, (1, 5, 256, 256, 3), dtype=torch.uint8)
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    before = task.memory.clone()
    loss, logs = task.training_step(frames)
    loss.backward()
    opt.step()
    assert np.isfinite(logs["loss"]) and not torch.equal(before, task.memory)
    model.eval()
    with torch.no_grad():
        out = model.stream_step(frames, {"memory": task.memory[None]})
    assert out["pred"].shape == (1, 3, 256, 256)
    assert out["state"]["memory"].shape == (1, 10, 512)


@pytest.mark.parametrize("name", ["mnad-pred", "mnad-recon"])
def test_stream_step_contract_and_batch_independence(name):
    torch.manual_seed(0)
    model = create_model(name, "edge-xs").eval()
    n = model.clip_length
    frames = torch.randint(0, 256, (3, n, 96, 96, 1), dtype=torch.uint8)
    mem = torch.stack([model.initial_state()["memory"]] * 3)
    mem[1] = torch.roll(mem[1], 1, 0)
    with torch.no_grad():
        out = model.stream_step(frames, {"memory": mem})
        assert set(out["scores"]) == set(model.score_components) == set(model.score_weights)
        for b in range(3):
            alone = model.stream_step(frames[b : b + 1], {"memory": mem[b : b + 1]})
            for k, v in alone["scores"].items():
                torch.testing.assert_close(out["scores"][k][b : b + 1], v, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(
                out["state"]["memory"][b : b + 1], alone["state"]["memory"], rtol=1e-5, atol=1e-6
            )


def test_high_error_frame_does_not_update_memory():
    """E_t ≥ γ (an abnormal-looking frame) must leave the stream's memory unchanged."""
    torch.manual_seed(0)
    model = create_model("mnad-pred", "edge-xs").eval()
    model.update_threshold = 0.0  # every frame has E_t > 0 → never written
    frames = torch.randint(0, 256, (1, 5, 96, 96, 1), dtype=torch.uint8)
    mem = model.initial_state()["memory"][None]
    with torch.no_grad():
        assert torch.equal(model.stream_step(frames, {"memory": mem})["state"]["memory"], mem)
        model.update_threshold = 10.0  # every frame below γ → written
        assert not torch.equal(model.stream_step(frames, {"memory": mem})["state"]["memory"], mem)


def test_skips_and_batchnorm_switches():
    m = create_model("mnad-pred", "edge-xs", skips=False, batchnorm=False)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    assert m.decoder.skips is False
    with pytest.raises(ConfigError, match="multiples of 8"):
        create_model("mnad-pred", "edge-xs", height=100)


def test_resize_upsampling_option():
    """`upsample=resize`: no transposed conv, same output shape, 1/9 of the upsampling MACs."""
    deconv = create_model("mnad-pred", "edge-s", height=64, width=96)
    resize = create_model("mnad-pred", "edge-s", height=64, width=96, upsample="resize")
    assert any(isinstance(x, torch.nn.ConvTranspose2d) for x in deconv.modules())
    assert not any(isinstance(x, torch.nn.ConvTranspose2d) for x in resize.modules())
    z = torch.zeros(1, resize.memory_dim * 2, 8, 12)
    skips = [torch.zeros(1, c, 64 // 2**i, 96 // 2**i) for i, c in enumerate((16, 32, 64))]
    assert resize.decoder(z, skips).shape == deconv.decoder(z, skips).shape == (1, 1, 64, 96)
    up_macs = sum(
        cin * cout * k * hw for cin, cout, k, hw in ((128, 64, 9, 8 * 12), (64, 32, 9, 16 * 24), (32, 16, 9, 32 * 48))
    )
    assert gmac_per_frame(deconv) - gmac_per_frame(resize) == pytest.approx(up_macs * 8 / 9 / 1e9, rel=0.02)
    with pytest.raises(ValueError, match="upsample mode"):
        create_model("mnad-pred", "edge-s", upsample="bilinear")
    with pytest.raises(ConfigError, match="unknown model option"):
        resolve_config("lai", "edge-s", {"upsample": "resize"})
