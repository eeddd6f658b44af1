"""Type-check the `vadedge` distribution with mypy, laid out as it is installed.

`train/`, `export/` and `calibration/` install as `vadedge.train`, `vadedge.export` and
`vadedge.calibration` (pyproject `[tool.setuptools.package-dir]`), which mypy cannot see from the
source tree or through the editable install's import hook. This script builds a tree of symlinks
with the installed layout under `.mypy_cache/tree/`, runs mypy on the package `vadedge` with the
settings in pyproject `[tool.mypy]`, and prints the findings with source-tree paths.

    .venv/bin/python .ci/typecheck.py          # exit status: mypy's
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vadedge"


def package_dirs() -> dict[str, str]:
    """Import name -> source folder for every package that does not sit where its name says."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = setuptools.get("package-dir", {})
    moved = {}
    for name in setuptools["packages"]:
        parent, _, leaf = name.rpartition(".")
        natural = f"{mapping.get(parent, parent.replace('.', '/'))}/{leaf}" if parent else name
        if mapping.get(name, natural) != natural:
            moved[name] = mapping[name]
    return moved


def build_tree(tree: Path) -> dict[str, str]:
    """Symlink tree of the installed layout; returns {path prefix in the tree: path prefix in the repo}."""
    shutil.rmtree(tree, ignore_errors=True)
    top = tree / PACKAGE
    top.mkdir(parents=True)
    for entry in (ROOT / PACKAGE).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    prefixes = {}
    for name, folder in sorted(package_dirs().items()):
        link = tree / name.replace(".", "/")
        link.symlink_to(ROOT / folder, target_is_directory=True)
        prefixes[name.replace(".", "/") + "/"] = folder.rstrip("/") + "/"
    return prefixes


def main() -> int:
    cache = ROOT / ".mypy_cache"
    tree = cache / "tree"
    prefixes = build_tree(tree)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(cache),
        "-p",
        PACKAGE,
    ]
    env = {**os.environ, "MYPYPATH": str(tree)}
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        for inside, source in prefixes.items():
            if line.startswith(inside):
                line = source + line[len(inside) :]
                break
        print(line)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
