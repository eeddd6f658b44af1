"""FFmpeg's decoder messages follow the CLI level: a damaged video floods stderr with `[mpeg4 @ 0x…]`
lines from FFmpeg itself (about 1,400 for this clip) unless vadedge sets its level; -v shows them.
FFmpeg reads the level once per process, when OpenCV first opens a video, so each case runs
`vadedge run` in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402

VADEDGE = [sys.executable, "-c", "from vadedge.cli import main; main()"]


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """An MPEG-4 clip with zeroed runs of bytes inside the stream: it opens, but its frames fail to decode."""
    path = tmp_path_factory.mktemp("damaged") / "damaged.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MPEG-4")
    rng = np.random.default_rng(0)
    for _ in range(60):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    for k in range(2000, len(data) - 2000, 997):
        data[k : k + 40] = bytes(40)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_toy_bundle(tmp_path_factory.mktemp("toy") / "toy", height=32, width=32)


def _run(video, bundle, *flags):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    return subprocess.run(
        VADEDGE + ["run", str(video), "--model", str(bundle), "--backend", "onnxruntime", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_ffmpeg_decoder_messages_only_with_verbose(damaged, bundle):
    loud = _run(damaged, bundle, "-v")
    assert loud.returncode == 0, loud.stderr[-2000:]
    if "@ 0x" not in loud.stderr:  # `[mpeg4 @ 0x…] Error at MB: 8` and the like: FFmpeg's own default
        pytest.skip("this FFmpeg build reports nothing for the damaged clip")
    assert "@ 0x" not in loud.stdout and "FFMPEG" not in loud.stdout  # stdout stays the command's output
    for flags in ((), ("-q",)):
        res = _run(damaged, bundle, *flags)
        assert res.returncode == 0, res.stderr[-2000:]
        assert "FFMPEG" not in res.stderr and "@ 0x" not in res.stderr, (flags, res.stderr[:500])
        assert "processed" in res.stdout
