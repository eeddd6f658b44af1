"""The Python version, the lint / type-check configuration and CI agree with each other."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CI = (ROOT / ".ci" / "run").read_text()


def _typecheck_module():
    spec = importlib.util.spec_from_file_location("vadedge_ci_typecheck", ROOT / ".ci" / "typecheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_python_version_everywhere():
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"  # tests import tomllib (3.11)
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py311"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == "3.11"
    minors = {
        c.rsplit(":: ", 1)[1]
        for c in PYPROJECT["project"]["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert minors and all(tuple(map(int, v.split("."))) >= (3, 11) for v in minors), minors
    assert sys.version_info >= (3, 11)


def test_ci_runs_the_readme_test_command_verbatim_and_the_checks():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Run the tests.*?```bash\n(.+?)\n```", readme, re.DOTALL)
    assert block and block.group(1) in CI.splitlines()
    for check in (".venv/bin/ruff check .", ".venv/bin/ruff format --check .", ".venv/bin/python .ci/typecheck.py"):
        assert any(line.startswith(check) and "rc=1" in line for line in CI.splitlines()), check


def test_tools_are_in_the_dev_extra_and_pinned():
    dev = " ".join(PYPROJECT["project"]["optional-dependencies"]["dev"])
    pins = (ROOT / "constraints.txt").read_text().split()
    for tool in ("ruff", "mypy"):
        assert re.search(rf"\b{tool}\b", dev), tool
        assert any(p.startswith(f"{tool}==") for p in pins), tool


def test_typecheck_tree_has_the_installed_layout(tmp_path):
    tc = _typecheck_module()
    assert tc.package_dirs() == {
        "vadedge.train": "train",
        "vadedge.export": "export",
        "vadedge.calibration": "calibration",
    }
    prefixes = tc.build_tree(tmp_path / "tree")
    assert prefixes == {
        "vadedge/train/": "train/",
        "vadedge/export/": "export/",
        "vadedge/calibration/": "calibration/",
    }
    top = tmp_path / "tree" / "vadedge"
    assert (top / "train" / "trainer.py").resolve() == ROOT / "train" / "trainer.py"
    assert (top / "runtime" / "detector.py").resolve() == ROOT / "vadedge" / "runtime" / "detector.py"
    assert (top / "export" / "tensorrt" / "__init__.py").is_file()
