"""`import vadedge` and `vadedge run` with ONNX Runtime never import torch (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.synthetic import write_video  # noqa: E402


def _python(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_vadedge_is_light():
    got = _python(
        "import sys, json, vadedge; "
        "print(json.dumps({m: m in sys.modules for m in ('torch', 'onnxruntime', 'onnx', 'tensorrt')}))"
    )
    assert got == {"torch": False, "onnxruntime": False, "onnx": False, "tensorrt": False}


def test_vadedge_run_with_onnxruntime_never_imports_torch(tmp_path):
    bundle = make_toy_bundle(tmp_path / "toy", threshold=(-1e9, -1e9))
    video = write_video(tmp_path / "v.avi", np.random.default_rng(0).integers(0, 255, (12, 40, 48, 3), np.uint8))
    code = f"""
import json, sys
from vadedge.cli import cli
try:
    cli(["run", {str(video)!r}, "--model", {str(bundle)!r}, "--backend", "onnxruntime", "--quiet",
         "--events", {str(tmp_path / "e.jsonl")!r}], standalone_mode=False)
finally:
    print(json.dumps({{m: m in sys.modules for m in ("torch", "onnxruntime", "onnx")}}))
"""
    got = _python(code)
    assert got == {"torch": False, "onnxruntime": True, "onnx": False}
    assert (tmp_path / "e.jsonl").read_text().count('"type": "end"') == 1
