"""Fuzz a bundle's vadedge.json and state.npz (issue 15).

A valid toy bundle is mutated — any value replaced by another JSON value of any type (NaN,
±Infinity, huge or negative numbers, long strings, paths that leave the folder, deep nesting),
keys deleted, the text truncated — or its state.npz truncated, corrupted or replaced by arrays of
other dtypes and shapes. Contract: `load_bundle`, `vadedge info` and `Detector.load` (+ a few
frames) either work or raise a vadedge error with a message (CLI: exit 2, no traceback); never
another exception, and never a file opened outside the bundle folder (an audit hook watches every
`open` of a "secret" folder beside the bundle that the mutations point at).
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import event, given
from hypothesis import strategies as st

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import BUNDLE_FILE, load_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.errors import VadedgeError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402

_IDS = itertools.count()
_OPENED: list[str] = []
_WATCH: list[str] = []  # resolved "secret" folders: nothing below them may be opened


def _audit(name: str, args: tuple) -> None:
    if name == "open" and _WATCH and args and isinstance(args[0], (str, bytes, Path)):
        path = args[0].decode(errors="replace") if isinstance(args[0], bytes) else str(args[0])
        if any(path.startswith(w) or Path(path).resolve().as_posix().startswith(w) for w in _WATCH):
            _OPENED.append(path)


sys.addaudithook(_audit)

CALIB = {"psnr": {"location": 40.0, "scale": 4.0}, "feature_distance": {"location": 0.05, "scale": 0.05}}
FRAMES = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), np.uint8) for i in range(6)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifest-fuzz")
    base = make_toy_bundle(root / "base", calibration=CALIB, threshold=(2.0, 1.0), params="shared")
    secret = root / "secret"
    secret.mkdir()
    shutil.copy2(base / "model.onnx", secret / "model.onnx")  # a valid model the bundle must not reach
    shutil.copy2(base / "state.npz", secret / "state.npz")
    (secret / "passwd").write_text("root:x:0:0\n")
    _WATCH[:] = [secret.resolve().as_posix(), secret.as_posix()]
    return root, base, secret


def _paths(doc, prefix=()):
    """Every key path in a JSON document (dict keys and list indices)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, prefix + (i,))
    return out


DEEP = "\x00deep\x00"  # replaced by a nested-array literal after json.dumps (the encoder would recurse)
PATHS = st.sampled_from(
    [
        "/etc/passwd",
        "../secret/model.onnx",
        "../secret/state.npz",
        "../secret/passwd",
        "SECRET_ABS/model.onnx",
        "SECRET_ABS/passwd",
        "sub/../../secret/model.onnx",
        "link/model.onnx",
        "model.onnx/..",
        ".",
        "",
        "..",
        "C:/x",
        "\\..\\x",
        "a\x00b",
        "model.onnx",
        "state.npz",
        "state.npz/",
        "./model.onnx",
        "nope.onnx",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.sampled_from([0, 1, -1, 8, 4096, 8192, 8193, 1 << 31, 1 << 62, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324]),
    st.text(max_size=20),
    PATHS,
    st.sampled_from(["dynamic", "float32", "int64", "gray", "rgb", "fp32", "fp16", "1", "psnr", "memory"]),
    st.integers(min_value=1, max_value=200_000).map(lambda n: f"{DEEP}{n}"),
)
JSON = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12,
)
FACTORS = st.sampled_from([0, -1, 0.5, 1, 2, 3, 1e6, 1e-6, float("nan"), float("inf")])
MUTATION = st.tuples(
    st.sampled_from(["set", "set", "tweak", "tweak", "tweak", "delete", "wrap"]),
    st.integers(0, 10_000),
    st.one_of(JSON, FACTORS),
)


def _at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _apply(doc, mutation, secret: Path):
    kind, pick, value = mutation
    paths = _paths(doc)[1:]
    if kind == "tweak":  # leaves only
        leaves = [p for p in paths if not isinstance(_at(doc, p), (dict, list))]
        paths = leaves or paths
    path = paths[pick % len(paths)]
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if isinstance(value, str):
        value = value.replace("SECRET_ABS", str(secret))
    old = parent[key]
    if kind == "tweak":  # a same-typed change: scaled numbers, other strings (often still a valid bundle)
        if isinstance(old, bool) or not isinstance(old, (int, float, str)):
            kind = "set"
        elif isinstance(old, str):
            parent[key] = value if isinstance(value, str) else old
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            new = old * value
            parent[key] = int(new) if isinstance(old, int) and new == new and abs(new) != float("inf") else new
    if kind == "set":
        parent[key] = value
    elif kind == "delete":
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif kind == "wrap":
        parent[key] = [old] if pick % 2 else {"x": old}
    event(f"{kind} {'.'.join(str(p) for p in path[:2])}")


def _dump(doc) -> str:
    text = json.dumps(doc, allow_nan=True)
    while DEEP in text:
        i = text.index(DEEP)
        j = i + len(DEEP)
        while text[j].isdigit():
            j += 1
        n = int(text[i + len(DEEP) : j])
        text = text[: i - 1] + "[" * n + "]" * n + text[j + 1 :]  # drop the string's quotes too
    return text


def _fresh(world) -> Path:
    root, base, _ = world
    b = root / f"b{next(_IDS)}"
    shutil.copytree(base, b)
    (b / "link").symlink_to(root / "secret", target_is_directory=True)
    return b


def _contract(bundle: Path) -> str:
    """Run every entry point; return "ok" or "error". Any other exception fails the test."""
    _OPENED.clear()
    try:
        outcome = "ok"
        try:
            b = load_bundle(bundle)
            for _, name in b.manifest.files():  # a loaded bundle names only files inside its folder
                assert b.file(name).is_relative_to(bundle.resolve())
        except VadedgeError as exc:
            assert str(exc).strip(), "empty error message"
            outcome = "error"
        res = CliRunner().invoke(cli, ["info", str(bundle)])
        assert res.exit_code in (0, 2), res.output
        assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
        assert "Traceback" not in res.output
        if res.exit_code == 2:
            assert "Error:" in res.output
        if outcome == "error":
            assert res.exit_code == 2, "info accepted what load_bundle refused"
        try:
            det = Detector.load(bundle, backend="onnxruntime", device="cpu", heatmap=False)
            for f in FRAMES:
                r = det.process(f)
            assert r.score is None or isinstance(r.score, float)
        except VadedgeError as exc:
            assert str(exc).strip()
            outcome = "error"
        return outcome
    finally:
        assert not _OPENED, f"opened outside the bundle: {_OPENED}"


@given(mutations=st.lists(MUTATION, min_size=1, max_size=2))
def test_mutated_manifest_loads_or_fails_cleanly(world, mutations):
    bundle = _fresh(world)
    try:
        doc = json.loads((bundle / BUNDLE_FILE).read_text())
        for m in mutations:
            if isinstance(doc, (dict, list)) and _paths(doc)[1:]:
                _apply(doc, m, world[2])
        (bundle / BUNDLE_FILE).write_text(_dump(doc))
        event(_contract(bundle))
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


@given(cut=st.integers(0, 10_000), junk=st.binary(max_size=8), at=st.integers(0, 10_000))
def test_damaged_manifest_text_fails_cleanly(world, cut, junk, at):
    bundle = _fresh(world)
    try:
        text = (bundle / BUNDLE_FILE).read_bytes()
        text = text[: cut % (len(text) + 1)]
        pos = at % (len(text) + 1)
        (bundle / BUNDLE_FILE).write_bytes(text[:pos] + junk + text[pos:])
        event(_contract(bundle))
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


DTYPES = st.sampled_from(
    ["float32", "float16", "float64", "int64", "int8", "uint8", "bool", "complex64", "U3", "object"]
)
SHAPES = st.one_of(
    st.sampled_from([(4, 8), (4,), (), (8, 4), (4, 8, 1), (0, 8), (4, 8)]),
    st.lists(st.integers(0, 9), max_size=4).map(tuple),
)
ARRAY = st.tuples(DTYPES, SHAPES, st.sampled_from([0.0, 1.0, float("nan"), float("inf"), 1e30]))
STATE = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 100_000), st.none()),
    st.tuples(st.just("flip"), st.integers(0, 100_000), st.binary(min_size=1, max_size=8)),
    st.tuples(
        st.just("arrays"),
        st.none(),
        st.dictionaries(st.sampled_from(["memory", "proto", "other", "memory.npy", ""]), ARRAY, max_size=3),
    ),
    st.tuples(
        st.just("header"),
        st.sampled_from([(4, 8), (1 << 40,), (1 << 20, 1 << 20), (4, 8, 2)]),
        st.sampled_from(["<f4", "<i8", "|O", ">f4", "<f8"]),
    ),
)


def _npz(arrays) -> bytes:
    buf = io.BytesIO()
    made = {}
    for name, (dtype, shape, fill) in arrays.items():
        if dtype == "object":
            made[name] = np.empty(shape, object)
        elif dtype == "U3":
            made[name] = np.full(shape, "abc")
        else:
            with np.errstate(all="ignore"):
                made[name] = np.full(shape, fill).astype(dtype)
    np.savez(buf, **made)
    return buf.getvalue()


def _header_npz(shape, descr) -> bytes:
    """memory.npy with a hand-written header (e.g. 2**40 elements) and only a little data behind it."""
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    raw = io.BytesIO()
    np.lib.format.write_array_header_1_0(raw, header)
    raw.write(b"\x00" * 128)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("memory.npy", raw.getvalue())
        zf.writestr("proto.npy", _npy(np.zeros(4, np.float32)))
    return buf.getvalue()


def _npy(arr) -> bytes:
    raw = io.BytesIO()
    np.save(raw, arr)
    return raw.getvalue()


@given(damage=STATE)
def test_damaged_state_file_fails_cleanly(world, damage):
    bundle = _fresh(world)
    try:
        path = bundle / "state.npz"
        kind, a, b = damage
        data = path.read_bytes()
        if kind == "truncate":
            data = data[: a % len(data)]
        elif kind == "flip":
            pos = a % len(data)
            data = data[:pos] + b + data[pos + len(b) :]
        elif kind == "arrays":
            data = _npz(b)
        else:
            data = _header_npz(a, b)
        path.write_bytes(data)
        outcome = _contract(bundle)
        event(f"{kind}: {outcome}")
        if outcome == "ok":
            st_ = load_bundle(bundle).state
            assert st_["memory"].shape == (4, 8) and st_["memory"].dtype == np.float32
    finally:
        shutil.rmtree(bundle, ignore_errors=True)
