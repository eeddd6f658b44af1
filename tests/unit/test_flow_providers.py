"""Flow providers (vadedge/flow.py) on synthetic translating patterns: direction, magnitude, layout."""

from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from vadedge.errors import ConfigError, DataError
from vadedge.flow import DISFlow, FarnebackFlow, get_flow_provider, list_flow_providers, to_gray

PROVIDERS = [{"name": "dis"}, {"name": "dis", "preset": "medium", "finest_scale": 0}, {"name": "farneback"}]


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def _blob_frame(bg: np.ndarray, cx: int, cy: int) -> np.ndarray:
    img = bg.copy()
    cv2.ellipse(img, (cx, cy), (4, 9), 0, 0, 360, 20, -1)
    cv2.circle(img, (cx, cy - 9), 3, 230, -1)
    return img


def test_registry_and_errors():
    assert list_flow_providers() == ["dis", "farneback"]
    with pytest.raises(ConfigError):
        get_flow_provider("flownet2")
    with pytest.raises(ConfigError):
        get_flow_provider("dis", preset="slow")
    with pytest.raises(ConfigError):
        get_flow_provider({"name": "farneback", "bogus": 1})
    with pytest.raises(DataError):
        get_flow_provider("dis")(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))


@pytest.mark.parametrize("spec", PROVIDERS)
@pytest.mark.parametrize("dx,dy", [(2.0, -1.0), (-1.0, 1.5)])
def test_global_translation_direction_and_magnitude(spec, dx, dy):
    """Whole-frame shift by (dx, dy): velocity of the current frame = (dx, dy) px/frame."""
    big = _texture(200, 200)
    prev, curr = big[20:148, 20:148], _shift(big, dx, dy)[20:148, 20:148]
    flow = get_flow_provider(spec)(prev, curr)
    assert flow.shape == (128, 128, 2) and flow.dtype == np.float32
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    med = np.median(inner, axis=0)
    np.testing.assert_allclose(med, [dx, dy], atol=0.2)


@pytest.mark.parametrize("spec", PROVIDERS)
@pytest.mark.parametrize("v", [(0, 1), (0, 3), (4, 0), (-3, -2)])
def test_moving_object_on_static_background(spec, v):
    """A pedestrian-sized blob moves by v on a static textured scene (the VAD case)."""
    bg = cv2.normalize(_texture(128, 128, 1).astype(np.float32), None, 60, 200, cv2.NORM_MINMAX).astype(np.uint8)
    prev, curr = _blob_frame(bg, 60, 60), _blob_frame(bg, 60 + v[0], 60 + v[1])
    flow = get_flow_provider(spec)(prev, curr)
    mask = np.zeros((128, 128), np.uint8)
    cv2.ellipse(mask, (60 + v[0], 60 + v[1]), (3, 7), 0, 0, 360, 1, -1)
    inside = np.median(flow[mask.astype(bool)], axis=0)
    speed = float(np.hypot(*v))
    assert np.dot(inside, v) / (np.linalg.norm(inside) * speed) > 0.95  # direction
    assert 0.75 * speed <= np.linalg.norm(inside) <= 1.2 * speed  # magnitude
    far = np.ones((128, 128), bool)
    far[30:100, 30:100] = False
    assert np.abs(flow[far]).mean() < 0.15  # the static background stays still


def test_clip_flow_layout_and_batch():
    big = _texture(120, 120)
    frames = np.stack([_shift(big, 1.5 * t, 0)[:96, :96] for t in range(3)])[..., None]  # (3, 96, 96, 1)
    p = get_flow_provider("dis")
    flows = p.clip_flow(frames)
    assert flows.shape == (2, 96, 96, 2)
    np.testing.assert_array_equal(flows[0], p(frames[0], frames[1]))
    batched = p.clip_flow(np.stack([frames, frames]))
    assert batched.shape == (2, 2, 96, 96, 2)
    np.testing.assert_array_equal(batched[1], flows)
    assert p.clip_flow(frames[:1]).shape == (0, 96, 96, 2)


def test_colour_order_does_not_change_flow():
    rgb = np.stack([_texture(64, 64, s) for s in range(3)], axis=-1)
    bgr = rgb[..., ::-1].copy()
    np.testing.assert_array_equal(to_gray(rgb), to_gray(bgr))
    p = get_flow_provider("farneback")
    np.testing.assert_array_equal(p(rgb, _shift(rgb, 1, 0)), p(bgr, _shift(bgr, 1, 0)))


@pytest.mark.parametrize("provider", [DISFlow(), DISFlow("fast", 0), FarnebackFlow(winsize=9)])
def test_config_round_trip_and_pickle(provider):
    """Model configs store `config()`; DataLoader workers pickle the provider (OpenCV objects do not pickle)."""
    img = _texture(64, 64)
    expected = provider(img, _shift(img, 1, 1))  # creates the OpenCV object
    again = get_flow_provider(provider.config())
    assert again.config() == provider.config()
    np.testing.assert_array_equal(again(img, _shift(img, 1, 1)), expected)
    clone = pickle.loads(pickle.dumps(provider))
    np.testing.assert_array_equal(clone(img, _shift(img, 1, 1)), expected)
