"""`require` names the right way to install a missing dependency."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from vadedge import _optional
from vadedge._optional import require
from vadedge.errors import MissingDependencyError

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]


def _hide(monkeypatch, name: str) -> None:
    real = _optional.importlib.import_module

    def fake(mod: str, *a, **kw):
        if mod.split(".")[0] == name:
            raise ModuleNotFoundError(f"No module named {mod!r}", name=mod)
        return real(mod, *a, **kw)

    monkeypatch.setattr(_optional.importlib, "import_module", fake)


def test_onnxruntime_is_a_core_dependency_not_an_extra(monkeypatch):
    _hide(monkeypatch, "onnxruntime")
    with pytest.raises(MissingDependencyError) as info:
        require("onnxruntime")
    msg = str(info.value)
    assert "core dependency" in msg and "pip install onnxruntime" in msg
    assert "vadedge[" not in msg


@pytest.mark.parametrize(("module", "extra"), [("torch", "train"), ("onnx", "export"), ("tensorrt", "trt")])
def test_optional_module_names_its_extra(monkeypatch, module, extra):
    _hide(monkeypatch, module)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'vadedge\[{extra}\]'"):
        require(f"{module}.sub")


def test_table_agrees_with_pyproject():
    """Each module's extra lists its distribution there, and core modules are in the core dependencies."""
    dist = {"sklearn": "scikit-learn", "paho": "paho-mqtt", "prometheus_client": "prometheus-client", "yaml": "pyyaml"}
    for module, (extra, _) in _optional._EXTRAS.items():
        reqs = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
        names = {r.split(">")[0].split("=")[0].split("[")[0].strip() for r in reqs}
        assert dist.get(module, module) in names, (module, extra)
