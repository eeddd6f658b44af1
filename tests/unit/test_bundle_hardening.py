"""Issue 15, bundle side: each case reproduces a reported failure and asserts the contract's outcome
(a BundleError / ConfigError with a clear message; CLI exit 2 without a traceback).

Cases: files outside the bundle folder (absolute, `..`, symlinks; `info` is no existence oracle),
NaN / Infinity in vadedge.json and in overrides, the model-vs-manifest check on every load,
corrupt / hostile vadedge.json and state.npz (truncated zip, deep nesting, huge sizes, int64),
bundle folder permissions (umask, another uid), `batch` vs the graph, `schema_version` as a string.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from vadedge.bundle import BUNDLE_FILE, BundleError, Manifest, load_bundle, save_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.errors import ConfigError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CALIB = {"psnr": {"location": 40.0, "scale": 4.0}, "feature_distance": {"location": 0.05, "scale": 0.05}}


@pytest.fixture
def toy(tmp_path):
    return make_toy_bundle(tmp_path / "toy", calibration=CALIB, threshold=(2.0, 1.0))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from vadedge.synthetic import write_video

    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    return write_video(path, np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), np.uint8), fps=10)


def _edit(bundle: Path, fn) -> Path:
    doc = json.loads((bundle / BUNDLE_FILE).read_text())
    fn(doc)
    (bundle / BUNDLE_FILE).write_text(json.dumps(doc))
    return bundle


def _write_raw(bundle: Path, text: str) -> Path:
    (bundle / BUNDLE_FILE).write_text(text)
    return bundle


def _cli_fails_cleanly(args, *needles):
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output and not isinstance(res.exception, (AttributeError, TypeError, KeyError))
    for n in needles:
        assert n in res.output, res.output
    return res.output


def _all_entry_points_reject(bundle: Path, clip: Path, match: str):
    """load_bundle, Detector.load (SDK), `vadedge info` and `vadedge run` agree: a clear error."""
    with pytest.raises(BundleError, match=match):
        load_bundle(bundle)
    with pytest.raises(BundleError, match=match):
        Detector.load(bundle, backend="onnxruntime", device="cpu")
    _cli_fails_cleanly(["info", str(bundle)])
    _cli_fails_cleanly(["run", str(clip), "--model", str(bundle), "--quiet"])


# ------------------------------------------------------------------ 1: confinement
@pytest.mark.parametrize(
    "section, value",
    [
        ("model", "/etc/passwd"),
        ("model", "../other/model.onnx"),
        ("model", "sub/../../other/model.onnx"),
        ("state", "../other/state.npz"),
        ("state", "/tmp/state.npz"),
        ("engine", "/etc/hostname"),
        ("engine", "../other/model.onnx"),
    ],
)
def test_files_outside_the_bundle_are_refused(tmp_path, clip, section, value):
    make_toy_bundle(tmp_path / "other")  # a second, valid bundle next to it: its files must not be used
    bundle = make_toy_bundle(tmp_path / "b")

    def point(doc):
        if section == "model":
            doc["models"]["fp32"] = value
        elif section == "state":
            doc["state_file"] = value
        else:
            doc["engines"] = [{"file": value, "precision": "fp32"}]

    _edit(bundle, point)
    _all_entry_points_reject(bundle, clip, "inside the bundle folder")


def test_symlinks_resolving_outside_are_refused(tmp_path, clip):
    other = make_toy_bundle(tmp_path / "other")
    bundle = make_toy_bundle(tmp_path / "b")
    (bundle / "model.onnx").unlink()
    (bundle / "model.onnx").symlink_to(other / "model.onnx")
    _all_entry_points_reject(bundle, clip, "resolves outside the bundle folder")
    inner = make_toy_bundle(tmp_path / "c")  # a symlink that stays inside is fine
    (inner / "model.onnx").rename(inner / "real.onnx")
    (inner / "model.onnx").symlink_to("real.onnx")
    assert load_bundle(inner).model_file().name == "real.onnx"


def test_manifest_symlinked_outside_is_refused(tmp_path, clip):
    other = make_toy_bundle(tmp_path / "other")
    bundle = make_toy_bundle(tmp_path / "b")
    (bundle / BUNDLE_FILE).unlink()
    (bundle / BUNDLE_FILE).symlink_to(other / BUNDLE_FILE)
    _all_entry_points_reject(bundle, clip, "resolves outside the bundle folder")


def test_info_is_not_an_existence_oracle(tmp_path):
    outputs = []
    for target in ("/etc/hostname", "/no/such/file/anywhere"):
        bundle = _edit(
            make_toy_bundle(tmp_path / f"b{len(outputs)}"),
            lambda d, t=target: d.update(engines=[{"file": t, "precision": "fp32"}]),
        )
        out = _cli_fails_cleanly(["info", str(bundle)], "inside the bundle folder")
        outputs.append(out.replace(target, "X").replace(str(bundle), "B"))
    assert outputs[0] == outputs[1]  # an existing and a missing path give the same answer


# ------------------------------------------------------------------ 2: NaN / Infinity
@pytest.mark.parametrize(
    "where",
    ["threshold.on", "threshold.off", "weight", "calibration.location", "calibration.scale", "smoothing", "provenance"],
)
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_the_manifest_are_refused(tmp_path, clip, where, literal):
    bundle = make_toy_bundle(tmp_path / "b", calibration=CALIB, threshold=(2.0, 1.0))
    text = (bundle / BUNDLE_FILE).read_text()
    doc = json.loads(text)
    marker = 12345.678
    key = {
        "threshold.on": ("score", "threshold", "on"),
        "threshold.off": ("score", "threshold", "off"),
        "weight": ("score", "weights", "psnr"),
        "calibration.location": ("score", "calibration", "psnr", "location"),
        "calibration.scale": ("score", "calibration", "psnr", "scale"),
        "smoothing": ("score", "smoothing"),
        "provenance": ("provenance", "opset"),
    }[where]
    node = doc
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = marker
    _write_raw(bundle, json.dumps(doc).replace(repr(marker), literal))
    _all_entry_points_reject(bundle, clip, "finite")


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), (float("nan"), 1.0), (2.0, float("-inf"))])
def test_non_finite_overrides_are_refused(toy, threshold):
    with pytest.raises(ConfigError, match="finite"):
        Detector.load(toy, backend="onnxruntime", device="cpu", threshold=threshold)
    with pytest.raises(ConfigError, match="finite|smoothing"):
        Detector.load(toy, backend="onnxruntime", device="cpu", smoothing=float("nan"))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "nan:1", "1:inf"])
def test_non_finite_cli_threshold_is_a_usage_error(toy, clip, value):
    _cli_fails_cleanly(["run", str(clip), "--model", str(toy), "--threshold", value, "--quiet"])


def test_nan_calibration_scale_info_and_run_agree(tmp_path, clip):
    """Was: NaN scale failed `run` but passed `info`."""
    bundle = make_toy_bundle(tmp_path / "b", calibration=CALIB, threshold=(2.0, 1.0))
    _write_raw(bundle, (bundle / BUNDLE_FILE).read_text().replace('"scale": 4.0', '"scale": NaN'))
    _all_entry_points_reject(bundle, clip, "finite")


# ------------------------------------------------------------------ 5: one validation on load
@pytest.mark.parametrize(
    "edit, state_shape, match",
    [
        (lambda d: d["input"].update(height=64), None, "shape"),
        (lambda d: d["graph"]["state"][0].update(shape=[4, 9]), (4, 9), "shape"),
        (lambda d: d["graph"].update(frames_input="clip"), None, "graph inputs"),
    ],
)
def test_mismatched_model_fails_on_load_not_at_first_inference(tmp_path, clip, edit, state_shape, match):
    """Was: `run` / `demo` crashed at the first inference with an ONNX Runtime traceback."""
    bundle = _edit(make_toy_bundle(tmp_path / "b"), edit)
    if state_shape is not None:  # a consistent state file: only the model disagrees
        np.savez(bundle / "state.npz", memory=np.zeros(state_shape, np.float32))
    load_bundle(bundle)  # vadedge.json and state.npz are fine on their own
    with pytest.raises(BundleError, match=match):
        Detector.load(bundle, backend="onnxruntime", device="cpu")
    run = _cli_fails_cleanly(["run", str(clip), "--model", str(bundle), "--quiet"])
    info = _cli_fails_cleanly(["info", str(bundle)])
    assert "model.onnx" in run and "model.onnx" in info
    _cli_fails_cleanly(["demo", "--model", str(bundle), "--out", str(tmp_path / "demo"), "--synthetic", "--quiet"])


# ------------------------------------------------------------------ 7: hostile manifest / state
def test_truncated_state_file(toy, clip):
    data = (toy / "state.npz").read_bytes()
    (toy / "state.npz").write_bytes(data[: len(data) // 2])
    _all_entry_points_reject(toy, clip, "state.npz")


def test_garbage_state_file(toy):
    (toy / "state.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(BundleError, match="state.npz"):
        load_bundle(toy)


def test_int64_state_is_refused_with_its_dtype(toy, clip):
    np.savez(toy / "state.npz", memory=np.zeros((4, 8), np.int64))
    _all_entry_points_reject(toy, clip, "int64")


def test_float64_state_is_cast_to_the_declared_dtype(toy):
    np.savez(toy / "state.npz", memory=np.full((4, 8), 0.5, np.float64))
    assert load_bundle(toy).state["memory"].dtype == np.float32


def test_state_arrays_cost_no_more_than_declared(toy):
    """An array whose header says a different (e.g. huge) shape is refused before its data is read."""
    big = np.lib.format.open_memmap(toy / "memory.npy", mode="w+", dtype=np.float32, shape=(4, 8, 64))
    del big
    import zipfile

    with zipfile.ZipFile(toy / "state.npz", "w") as zf:
        zf.write(toy / "memory.npy", "memory.npy")
    with pytest.raises(BundleError, match="shape"):
        load_bundle(toy)


@pytest.mark.parametrize("depth", [100, 100_000])
def test_deeply_nested_manifest(toy, clip, depth):
    text = (toy / BUNDLE_FILE).read_text()
    nested = "[" * depth + "]" * depth
    _write_raw(toy, text.replace('"provenance": {', f'"provenance": {{"deep": {nested}, ', 1))
    _all_entry_points_reject(toy, clip, "nested")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["input"].update(height=1 << 30), "height must be <="),
        (lambda d: d["input"].update(clip_length=1 << 40), "clip_length must be <="),
        (lambda d: d["input"].update(height=8192, width=8192, clip_length=200), "MiB per stream"),
        (lambda d: d["graph"]["state"][0].update(shape=[1 << 20, 1 << 20]), "elements"),
        (lambda d: d["graph"]["state"][0].update(shape=[1] * 40), "at most"),
        (lambda d: d["graph"].update(batch=1 << 40), "batch"),
        (lambda d: d["score"].update(min_event_frames=10**30), "min_event_frames"),
    ],
)
def test_huge_sizes_are_bounded(toy, edit, match):
    _edit(toy, edit)
    with pytest.raises(BundleError, match=match):
        load_bundle(toy)


def test_oversized_manifest_file(toy):
    doc = json.loads((toy / BUNDLE_FILE).read_text())
    doc["provenance"]["padding"] = "x" * (5 << 20)
    (toy / BUNDLE_FILE).write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="at most"):
        load_bundle(toy)


# ------------------------------------------------------------------ 8: permissions
def test_staging_folder_honours_the_umask(tmp_path):
    from vadedge.export.exporter import _staging_dir

    for mask, mode in ((0o022, 0o755), (0o002, 0o775), (0o077, 0o700)):
        old = os.umask(mask)
        try:
            work = _staging_dir(tmp_path / f"out{mask}")
        finally:
            os.umask(old)
        assert work.stat().st_mode & 0o777 == mode
        assert work.parent == tmp_path and work.name.startswith(f".out{mask}.")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to switch uid")
def test_a_bundle_exported_by_root_loads_as_another_user():
    """Staging folder + files as the exporter writes them, renamed into place, read by uid 65534."""
    from vadedge.export.exporter import _replace_dir, _staging_dir

    old = os.umask(0o022)
    parent = Path(tempfile.mkdtemp(prefix="vadedge-uid-"))
    try:
        parent.chmod(0o755)
        work = _staging_dir(parent / "bundle")
        make_toy_bundle(work)
        _replace_dir(work, parent / "bundle")
        # import first (this machine's Python may not be readable by that user), then drop to uid 65534
        code = (
            "import os, encodings.cp437\nfrom vadedge.bundle import load_bundle\n"
            "os.setgroups([])\nos.setgid(65534)\nos.setuid(65534)\n"
            f"b = load_bundle({str(parent / 'bundle')!r})\nprint(os.getuid(), sorted(b.state))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        res = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd="/"
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout.split()[0] == "65534" and "memory" in res.stdout
    finally:
        os.umask(old)
        import shutil

        shutil.rmtree(parent, ignore_errors=True)


# ------------------------------------------------------------------ 9: batch and schema_version
def test_static_batch_over_a_dynamic_graph_is_refused(tmp_path, clip):
    bundle = _edit(make_toy_bundle(tmp_path / "b", batch="dynamic"), lambda d: d["graph"].update(batch=4))
    with pytest.raises(BundleError, match="graph declares"):
        Detector.load(bundle, backend="onnxruntime", device="cpu")
    _cli_fails_cleanly(["info", str(bundle)], "graph declares")
    _cli_fails_cleanly(["run", str(clip), "--model", str(bundle), "--quiet"], "graph declares")


def test_schema_version_as_a_string(toy):
    _edit(toy, lambda d: d.update(schema_version="1"))
    with pytest.raises(BundleError) as err:
        load_bundle(toy)
    msg = str(err.value)
    assert "must be an integer" in msg and "'1'" in msg and "reads version" not in msg
    _cli_fails_cleanly(["info", str(toy)], "must be an integer")


# ------------------------------------------------------------------ typed manifest
def test_manifest_round_trip_is_typed_and_frozen(toy):
    m = load_bundle(toy).manifest
    assert isinstance(m, Manifest) and m.graph.state[0].shape == (4, 8) and m.score.threshold.on == 2.0
    assert Manifest.from_dict(m.to_dict()) == m
    with pytest.raises(AttributeError):
        m.family = "x"  # type: ignore[misc]
    doc = m.to_dict()
    doc["models"]["fp16"] = "x.onnx"  # a copy: the manifest is unchanged
    assert "fp16" not in m.models
    save_bundle(toy, m, load_bundle(toy).state)
    assert load_bundle(toy).manifest == m


def test_shipped_bundle_has_no_absolute_build_paths():
    doc = json.loads((REPO / "vadedge" / "assets" / "default" / BUNDLE_FILE).read_text())
    strings = []
    todo = [doc]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            todo += list(v.values())
        elif isinstance(v, list):
            todo += v
        elif isinstance(v, str):
            strings.append(v)
    assert not [s for s in strings if s.startswith(("/", "~")) or (len(s) > 2 and s[1:3] in (":\\", ":/"))]
    Manifest.from_dict(doc)
    assert math.isfinite(doc["score"]["threshold"]["on"])


def test_synthetic_bundle_for_the_bench_is_a_valid_bundle(tmp_path):
    """`vadedge.bench.synthetic_bundle` (product code, no test helper) writes a bundle that checks and runs."""
    from vadedge.bench.synthetic_bundle import write_synthetic_bundle
    from vadedge.export.verify import check_bundle

    path = write_synthetic_bundle(tmp_path / "s", height=32, width=48)
    b = check_bundle(path)
    assert b.manifest.family == "synthetic" and b.manifest.graph.batch == "dynamic"
    det = Detector.load(path, backend="onnxruntime", device="cpu")
    rng = np.random.default_rng(0)
    results = [det.process(rng.integers(0, 255, (32, 48, 3), np.uint8)) for _ in range(6)]
    assert results[-1].score is not None and math.isfinite(results[-1].score)
