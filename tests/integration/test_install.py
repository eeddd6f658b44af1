"""Packaging: `pip install .` and `pip install -e .` into fresh venvs give working imports and CLI.

The fresh venvs reuse this environment's already-installed dependencies through a .pth file (so the
test does not download torch again) but install vadedge itself from the source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _venv(tmp: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True)
    py = tmp / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "_parent_env.pth").write_text(parent + "\n")
    # The venv's own bundled setuptools (65 on Python 3.11) would shadow the parent's newer one,
    # which the no-isolation build needs (bdist_wheel is built into setuptools >= 70.1).
    subprocess.run([str(py), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=False, capture_output=True)
    return py


def _pip_install(py: Path, *args: str) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", *args],
        check=True,
        cwd=REPO,
        env=env,
    )


CHECK = """
import sys, vadedge
assert 'torch' not in sys.modules, 'import vadedge imported torch'
import vadedge.train, vadedge.export, vadedge.calibration
from vadedge.train import create_model
create_model('mnad-pred', 'edge-xs')
print(vadedge.__version__, vadedge.train.__file__)
"""


@pytest.mark.parametrize("editable", [False, True], ids=["pip-install", "pip-install-e"])
def test_install_gives_working_imports_and_cli(tmp_path, editable):
    py = _venv(tmp_path / "venv")
    _pip_install(py, "-e", ".") if editable else _pip_install(py, ".")
    out = subprocess.run(
        [str(py), "-c", CHECK], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout.split()
    train_file = Path(out[1]).resolve()
    if editable:
        assert train_file == (REPO / "train" / "__init__.py").resolve()
    else:
        assert REPO not in train_file.parents  # a real copy in site-packages
        assert "site-packages" in str(train_file)
    cli = tmp_path / "venv" / "bin" / "vadedge"
    version = subprocess.run([str(cli), "--version"], check=True, capture_output=True, text=True).stdout
    assert out[0] in version
    helptext = subprocess.run([str(cli), "--help"], check=True, capture_output=True, text=True).stdout
    assert "train" in helptext and "eval" in helptext


def test_import_vadedge_is_torch_free():
    code = "import sys, vadedge, vadedge.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"


def test_readme_quickstart_demo_in_fresh_venv(tmp_path):
    """The README's main Quickstart: a fresh install runs `vadedge demo` with the shipped bundle."""
    readme = (REPO / "README.md").read_text()
    assert "pip install -q -c constraints.txt -e . && .venv/bin/vadedge demo" in readme
    py = _venv(tmp_path / "venv")
    _pip_install(py, ".")
    out = tmp_path / "demo"
    proc = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "vadedge"), "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("demo.mp4", "events.jsonl", "scores.png"):
        assert (out / name).stat().st_size > 0, name


def test_every_package_directory_is_listed_in_pyproject():
    """A subpackage missing from pyproject's explicit list would vanish from `pip install .`."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    roots = {
        "vadedge": "vadedge",
        "vadedge.train": "train",
        "vadedge.export": "export",
        "vadedge.calibration": "calibration",
    }
    found = set()
    for name, folder in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder).parts
            found.add(".".join((name, *rel)))
    assert found <= listed, f"add to pyproject packages: {sorted(found - listed)}"


def test_every_plugin_source_is_package_data():
    """`vadedge export build-plugins` compiles from the installed sources: a file the globs miss breaks it."""
    import fnmatch
    import tomllib

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "vadedge.export.plugins"
    ]
    root = REPO / "export" / "plugins"
    sources = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"
    ]
    missed = [s for s in sources if not any(fnmatch.fnmatch(s, g) for g in globs)]
    assert sources and not missed, f"add to pyproject package-data: {missed}"
