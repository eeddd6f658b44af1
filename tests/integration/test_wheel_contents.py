"""The wheel ships the product only: no test doubles (fakes, toy-bundle helpers, conftest, tests/).

Issue 13: `vadedge/runtime/testing.py` and `export/tensorrt/fake.py` used to be installed with every
`pip install vadedge`; they now live in tests/fakes/. This builds the wheel from a copy of the source
tree (without build isolation, as tests/integration/test_install.py does, so nothing is downloaded)
and lists its files.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

#: Files that are test doubles or test code by name, wherever they would sit in the wheel.
DOUBLES = ("fake*.py", "*_fake.py", "fakes.py", "testing.py", "conftest.py", "test_*.py", "*_test.py")
#: The places the doubles used to be (issue 13); named so a move back is caught even under a new name pattern.
FORMER = ("vadedge/runtime/testing.py", "vadedge/export/tensorrt/fake.py")


def _bdist_wheel_available() -> bool:
    """setuptools >= 70.1 has bdist_wheel built in; older ones need the `wheel` package."""
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> dict[str, bytes]:
    """{file name in the wheel: contents}."""
    if not _bdist_wheel_available():
        pytest.skip("building a wheel without isolation needs setuptools >= 70.1 (the dev extra) or `wheel`")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build writes no build/ or *.egg-info into the checkout
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            ".mypy_cache",
            ".ruff_cache",
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = (tmp / "dist").glob("vadedge-*.whl")
    with zipfile.ZipFile(built) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.fixture(scope="module")
def wheel_files(wheel) -> list[str]:
    return sorted(wheel)


def test_wheel_has_the_product(wheel_files):
    # a positive control: the listing is of a real wheel with the packages the doubles were next to
    for name in (
        "vadedge/__init__.py",
        "vadedge/runtime/engine.py",
        "vadedge/runtime/backends/tensorrt.py",
        "vadedge/export/tensorrt/builder.py",
        "vadedge/bench/synthetic_bundle.py",
    ):
        assert name in wheel_files, name


def test_wheel_has_no_test_doubles(wheel_files):
    top = {f.split("/", 1)[0] for f in wheel_files}
    assert "tests" not in top, sorted(f for f in wheel_files if f.startswith("tests/"))
    doubles = [f for f in wheel_files if any(fnmatch.fnmatch(f.rsplit("/", 1)[-1], p) for p in DOUBLES)]
    assert not doubles, f"test doubles in the wheel: {doubles}"
    assert not set(FORMER) & set(wheel_files)


def test_product_code_does_not_import_the_tests(wheel):
    """An installed vadedge has no tests/ beside it: product code importing tests.fakes would break there."""
    pattern = re.compile(rb"^\s*(from|import)\s+tests(\.|\s|$)", re.MULTILINE)
    offenders = [name for name, data in wheel.items() if name.endswith(".py") and pattern.search(data)]
    assert not offenders, offenders
