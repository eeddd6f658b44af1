"""`build_plugins`: the CMake commands it runs (fake runner), its errors, and a real kernels-only CMake
build where cmake and nvcc exist (TensorRT headers are not available here, so the full plugin build
is exercised only through the fake)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vadedge.export.plugins import LIBRARY_NAME, PluginBuildError, build_plugins
from vadedge.export.plugins import build as build_mod


class FakeRunner:
    def __init__(self, fail_step: int | None = None, log: str = "") -> None:
        self.calls: list[list[str]] = []
        self.fail_step, self.log = fail_step, log

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        rc = 1 if self.fail_step == len(self.calls) - 1 else 0
        return subprocess.CompletedProcess(cmd, rc, stdout=self.log if rc else "", stderr="")


def test_configure_and_build_commands(tmp_path):
    runner = FakeRunner()
    lib = build_plugins(
        tmp_path / "out", ["sm_87", "8.6"], tensorrt_root=tmp_path / "trt", cmake="cmake", jobs=3, runner=runner
    )
    assert lib == (tmp_path / "out").resolve() / LIBRARY_NAME
    configure, build = runner.calls
    assert configure[:3] == ["cmake", "-S", str(build_mod.SOURCE_DIR)]
    assert "-DCMAKE_CUDA_ARCHITECTURES=87;86" in configure
    assert f"-DTENSORRT_ROOT={(tmp_path / 'trt').resolve()}" in configure
    assert "-DVADEDGE_KERNELS_ONLY=OFF" in configure
    assert f"-DVADEDGE_OUTPUT_DIR={(tmp_path / 'out').resolve()}" in configure
    assert build[:3] == ["cmake", "--build", str((tmp_path / "out").resolve() / "build")]
    assert build[-2:] == ["--parallel", "3"]
    assert (build_mod.SOURCE_DIR / "CMakeLists.txt").is_file()


def test_default_archs_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setattr(build_mod, "detect_cuda_archs", lambda: None)
    monkeypatch.setattr(build_mod.platform, "machine", lambda: "aarch64")
    runner = FakeRunner()
    build_plugins(tmp_path, cmake="cmake", runner=runner)
    assert "-DCMAKE_CUDA_ARCHITECTURES=87" in runner.calls[0]


def test_missing_tensorrt_gives_a_hint(tmp_path):
    runner = FakeRunner(fail_step=0, log="CMake Error: TensorRT headers/library not found (NvInferRuntime.h)")
    with pytest.raises(PluginBuildError, match="libnvinfer-dev"):
        build_plugins(tmp_path, "87", cmake="cmake", runner=runner)
    assert len(runner.calls) == 1  # no build after a failed configure


@pytest.mark.parametrize("archs", ["", "sm_x", ["87", "compute?"]])
def test_bad_architectures(tmp_path, archs):
    with pytest.raises(PluginBuildError, match="CUDA architectures"):
        build_plugins(tmp_path, archs, cmake="cmake", runner=FakeRunner())


def test_no_cmake(monkeypatch, tmp_path):
    monkeypatch.setattr(build_mod.shutil, "which", lambda name: None)
    with pytest.raises(PluginBuildError, match="cmake was not found"):
        build_plugins(tmp_path, "87")


def test_real_kernels_only_cmake_build(tmp_path):
    if shutil.which("cmake") is None or shutil.which("nvcc") is None:
        pytest.skip("cmake and nvcc are needed for the real kernels-only build")
    lib = build_plugins(tmp_path, ["87"], kernels_only=True, jobs=1)
    assert isinstance(lib, Path) and lib.is_file() and lib.stat().st_size > 0
