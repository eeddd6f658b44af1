"""Dataset reader and synthetic generator on generated data; bad inputs give DataError."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from vadedge import DataError, InputSpec, open_split, prepare_frame
from vadedge.synthetic import SceneGenerator, write_video


def test_synthetic_layout_and_labels(synthetic_root):
    train = open_split(synthetic_root, "training")
    test = open_split(synthetic_root, "testing")
    assert [v.name for v in train.videos] == ["01", "02", "03", "04"]
    assert train.num_frames == 240 and not train.has_labels
    assert test.has_labels
    for v in test.videos:
        assert v.labels.shape == (60,)
        assert 0 < v.labels.sum() < 60  # each test video has normal and anomalous frames
    frame = train.videos[0].read_frame(0)
    assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8


def test_synthetic_is_deterministic(tmp_path):
    a = SceneGenerator(48, 64, seed=3).render(20, seed=7, anomaly="speed", anomaly_start=5)
    b = SceneGenerator(48, 64, seed=3).render(20, seed=7, anomaly="speed", anomaly_start=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = SceneGenerator(48, 64, seed=4).render(20, seed=7)
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kind", ["speed", "direction", "shape"])
def test_each_anomaly_kind_is_labelled(kind):
    frames, labels = SceneGenerator(64, 96, seed=0).render(60, seed=1, anomaly=kind, anomaly_start=10)
    assert labels[:10].sum() == 0 and labels.sum() > 5


def test_frames_sorted_numerically(tmp_path):
    folder = tmp_path / "d" / "training" / "frames" / "v"
    folder.mkdir(parents=True)
    for i in (0, 2, 10, 1):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    video = open_split(tmp_path / "d", "training").videos[0]
    assert [p.stem for p in video.frame_files] == ["0", "1", "2", "10"]


def test_video_files_are_videos(tmp_path):
    frames, _ = SceneGenerator(64, 96, seed=0).render(12, seed=0)
    (tmp_path / "ds" / "training").mkdir(parents=True)
    write_video(tmp_path / "ds" / "training" / "cam.avi", frames)
    split = open_split(tmp_path / "ds", "training")
    assert split.videos[0].is_file and split.videos[0].num_frames == 12
    arr = split.videos[0].load(InputSpec(32, 48, "gray", 4))
    assert arr.shape == (12, 32, 48, 1)


def test_npy_labels(synthetic_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(synthetic_root / "testing", root / "testing")
    flat = np.concatenate([v.labels for v in open_split(synthetic_root, "testing").videos])
    np.save(root / "frame_labels_syn.npy", flat[None, :])
    test = open_split(root, "testing", require_labels=True)
    np.testing.assert_array_equal(np.concatenate([v.labels for v in test.videos]), flat)
    np.save(root / "frame_labels_syn.npy", flat[:-3])
    with pytest.raises(DataError, match="frame labels"):
        open_split(root, "testing")


def test_bad_inputs(tmp_path, synthetic_root):
    with pytest.raises(DataError, match="does not exist"):
        open_split(tmp_path / "missing")
    (tmp_path / "empty" / "training" / "frames").mkdir(parents=True)
    with pytest.raises(DataError, match="no videos"):
        open_split(tmp_path / "empty")
    (tmp_path / "empty" / "training" / "frames" / "v1").mkdir()
    with pytest.raises(DataError, match="no image frames"):
        open_split(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(synthetic_root, bad)
    (bad / "training" / "frames" / "01" / "005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read frame"):
        open_split(bad, "training").videos[0].load(InputSpec(32, 32, "gray", 4))
    labels = json.loads((bad / "labels.json").read_text())
    labels["frames_per_video"]["01"] = 61
    (bad / "labels.json").write_text(json.dumps(labels))
    with pytest.raises(DataError, match="61 frames"):
        open_split(bad, "testing")
    with pytest.raises(DataError, match="no labels"):
        open_split(synthetic_root, "training", require_labels=True)


def test_prepare_frame_modes():
    bgr = np.zeros((30, 40, 3), np.uint8)
    bgr[..., 2] = 200  # red in BGR
    rgb = prepare_frame(bgr, InputSpec(16, 24, "rgb", 1))
    assert rgb.shape == (16, 24, 3) and rgb[0, 0, 0] == 200
    gray = prepare_frame(bgr, InputSpec(16, 24, "gray", 1))
    assert gray.shape == (16, 24, 1)
    with pytest.raises(DataError, match="uint8"):
        prepare_frame(bgr.astype(np.float32), InputSpec(16, 24, "gray", 1))
    with pytest.raises(DataError, match="shape"):
        prepare_frame(np.zeros((4, 4, 2), np.uint8), InputSpec(16, 24, "gray", 1))


def test_ped2_reader(ped2_root):
    train = open_split(ped2_root, "training")
    test = open_split(ped2_root, "testing", require_labels=True)
    assert len(train.videos) == 16 and train.num_frames == 2550
    assert len(test.videos) == 12 and test.num_frames == 2010
    assert sum(int(v.labels.sum()) for v in test.videos) == 1648
