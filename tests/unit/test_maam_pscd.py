"""PSCD patch scoring (train/pscd.py) on crafted error maps with known worst patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vadedge.errors import ConfigError
from vadedge.train.pscd import PSCDConfig, box_sum, pscd


def _reference_patch_sums(err: np.ndarray, patch, stride) -> np.ndarray:
    """Plain loops: Σ over channels and the h×w window at every strided position (B, H', W')."""
    b, _, h, w = err.shape
    (ph, pw), (sh, sw) = patch, stride
    rows, cols = (h - ph) // sh + 1, (w - pw) // sw + 1
    out = np.zeros((b, rows, cols))
    for n in range(b):
        for i in range(rows):
            for j in range(cols):
                out[n, i, j] = err[n, :, i * sh : i * sh + ph, j * sw : j * sw + pw].sum()
    return out


def test_box_sum_matches_loops():
    rng = np.random.default_rng(0)
    err = rng.random((2, 3, 20, 17)).astype(np.float32)
    got = box_sum(torch.from_numpy(err), (5, 4), (3, 2)).numpy()
    np.testing.assert_allclose(got, _reference_patch_sums(err, (5, 4), (3, 2)), rtol=1e-5)


def test_known_patch_max_and_location():
    """One 4×3 block of error 1 (appearance) in a zero map: the best 6×4 patch holds all 12 pixels."""
    d_app = torch.zeros(1, 1, 32, 32)
    d_app[0, 0, 13:17, 20:23] = 1.0
    d_mot = torch.zeros(1, 2, 32, 32)
    cfg = PSCDConfig.create((6, 4), (2, 2), psi=1.0, frame_hw=(32, 32))
    out = pscd(d_app, d_mot, cfg)
    assert out["app"].item() == pytest.approx(12.0)
    assert out["fused"].item() == pytest.approx(12.0)
    assert out["mot"].item() == 0.0
    i, j = np.unravel_index(out["map"][0].argmax().item(), out["map"].shape[1:])
    assert i * 2 <= 13 and i * 2 + 6 >= 17 and j * 2 <= 20 and j * 2 + 4 >= 23  # the patch covers the block


def test_stride_can_split_the_block():
    """With stride = patch size, a block straddling two patches is seen only in part."""
    d = torch.zeros(1, 1, 16, 16)
    d[0, 0, 2:6, 6:10] = 1.0  # 4×4 block across the vertical line x = 8
    cfg = PSCDConfig.create(8, 8, 1.0, (16, 16))
    assert pscd(d, torch.zeros(1, 2, 16, 16), cfg)["app"].item() == pytest.approx(8.0)
    cfg = PSCDConfig.create(8, 2, 1.0, (16, 16))
    assert pscd(d, torch.zeros(1, 2, 16, 16), cfg)["app"].item() == pytest.approx(16.0)


def test_fusion_is_patchwise_before_the_max():
    """Appearance and motion peaks in different places: the fused max is not ψ·max_app + (1−ψ)·max_mot."""
    d_app = torch.zeros(1, 1, 24, 24)
    d_app[0, 0, 0:4, 0:4] = 1.0  # 16 in the top-left patch
    d_mot = torch.zeros(1, 2, 24, 24)
    d_mot[0, :, 20:24, 20:24] = 0.5  # 2 channels × 16 × 0.5 = 16 in the bottom-right patch
    d_mot[0, 0, 0:4, 0:4] = 0.25  # 4 in the top-left patch
    cfg = PSCDConfig.create(4, 4, 0.75, (24, 24))
    out = pscd(d_app, d_mot, cfg)
    assert out["app"].item() == pytest.approx(16.0)
    assert out["mot"].item() == pytest.approx(16.0)
    # top-left: 0.75·16 + 0.25·4 = 13; bottom-right: 0.25·16 = 4
    assert out["fused"].item() == pytest.approx(13.0)
    assert out["map"].shape == (1, 6, 6)


def test_scale_divides_each_branch():
    d_app = torch.ones(1, 1, 8, 8)
    d_mot = torch.ones(1, 2, 8, 8)
    cfg = PSCDConfig.create(4, 4, 0.5, (8, 8))
    out = pscd(d_app, d_mot, cfg, scale=torch.tensor([16.0, 32.0]))
    assert out["app"].item() == pytest.approx(1.0) and out["mot"].item() == pytest.approx(1.0)
    assert out["fused"].item() == pytest.approx(1.0)


def test_batch_is_independent():
    d = torch.zeros(3, 1, 10, 10)
    d[1, 0, 5, 5] = 2.0
    out = pscd(d, torch.zeros(3, 2, 10, 10), PSCDConfig.create(3, 1, 1.0, (10, 10)))
    assert out["fused"].tolist() == [0.0, 2.0, 0.0]


@pytest.mark.parametrize("patch,stride,psi", [((40, 4), 1, 0.5), ((4, 4), 0, 0.5), ((4, 4), 1, 1.5), ((4,), 1, 0.5)])
def test_config_validation(patch, stride, psi):
    with pytest.raises(ConfigError):
        PSCDConfig.create(patch, stride, psi, (32, 32))


def test_grid_size():
    cfg = PSCDConfig.create((30, 20), (8, 5), 0.9, (240, 360))
    assert cfg.grid((240, 360)) == (27, 69)
    assert box_sum(torch.zeros(1, 1, 240, 360), cfg.patch, cfg.stride).shape == (1, 27, 69)


@pytest.mark.parametrize(
    "hw,patch,stride",
    [
        ((240, 360), (30, 20), (8, 5)),
        ((128, 128), (16, 7), (4, 2)),
        ((128, 192), (16, 11), (4, 3)),
        ((32, 48), (4, 3), (1, 1)),
    ],
)
def test_relative_patch_keeps_the_person_size(hw, patch, stride):
    """Floats in (0, 1] are fractions: the patch of the frame, the stride of the patch."""
    cfg = PSCDConfig.create([0.125, 0.0556], [0.25, 0.25], 0.5, hw)
    assert (cfg.patch, cfg.stride) == (patch, stride)
    assert PSCDConfig.create([30, 20], [8, 5], 0.5, (240, 360)).patch == (30, 20)  # ints are pixels
