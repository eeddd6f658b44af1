"""Bundle round trip and rejection of corrupt / mismatched bundles (vadedge.json vs the model files).

Uses a hand-made stream-step graph (onnx.helper), so no torch export is needed.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from vadedge.bundle import BUNDLE_FILE, BundleError, load_bundle, save_bundle  # noqa: E402
from vadedge.cli import cli  # noqa: E402
from vadedge.export.verify import check_bundle  # noqa: E402
from vadedge.runtime.runner import StreamRunner  # noqa: E402

H = W = 8
CLIP = 2
M, D = 3, 4


def _toy_graph(batch=1, frames_name="frames", memory_name="memory_in"):
    """frames uint8 [B,2,8,8,1] + memory [B,3,4] → psnr [B] (mean pixel), memory_out = memory + 1, error_map."""
    b = batch if batch != "dynamic" else "B"
    axes = helper.make_tensor("axes", TensorProto.INT64, [4], [1, 2, 3, 4])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    em_shape = helper.make_tensor("em_shape", TensorProto.INT64, [3], [-1, 2, 2])
    nodes = [
        helper.make_node("Cast", [frames_name], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["psnr"], keepdims=0),
        helper.make_node("Add", [memory_name, "one"], ["memory_out"]),
        helper.make_node("Slice", ["memory_out", "s0", "s1", "s2"], ["em_flat"]),
        helper.make_node("Reshape", ["em_flat", "em_shape"], ["error_map"]),
    ]
    inits = [
        axes,
        one,
        em_shape,
        helper.make_tensor("s0", TensorProto.INT64, [2], [0, 0]),
        helper.make_tensor("s1", TensorProto.INT64, [2], [1, 4]),
        helper.make_tensor("s2", TensorProto.INT64, [2], [1, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_stream",
        [
            helper.make_tensor_value_info(frames_name, TensorProto.UINT8, [b, CLIP, H, W, 1]),
            helper.make_tensor_value_info(memory_name, TensorProto.FLOAT, [b, M, D]),
        ],
        [
            helper.make_tensor_value_info("psnr", TensorProto.FLOAT, [b]),
            helper.make_tensor_value_info("memory_out", TensorProto.FLOAT, [b, M, D]),
            helper.make_tensor_value_info("error_map", TensorProto.FLOAT, [b, 2, 2]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model


def _manifest(batch=1):
    return {
        "schema_version": 1,
        "family": "toy",
        "preset": None,
        "precision": "fp32",
        "input": {"height": H, "width": W, "color": "gray", "frames": 1, "clip_length": CLIP},
        "graph": {
            "batch": batch,
            "frames_input": "frames",
            "state": [
                {"name": "memory", "input": "memory_in", "output": "memory_out", "shape": [M, D], "dtype": "float32"}
            ],
            "params": [],
            "scores": {"psnr": "psnr"},
            "extra_outputs": {"error_map": "error_map"},
        },
        "models": {"fp32": "model.onnx"},
        "engines": [],
        "state_file": "state.npz",
        "score": {
            "signs": {"psnr": -1},
            "weights": {"psnr": 1.0},
            "calibration": {"psnr": {"location": 100.0, "scale": 2.0}},
            "smoothing": 0.3,
            "threshold": {"on": 3.0, "off": 2.0, "policy": "false_alarm_rate", "target": 0.01},
            "min_event_frames": 5,
        },
        "provenance": {"vadedge_version": "test"},
    }


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "b"
    path.mkdir()
    onnx.save(_toy_graph(), str(path / "model.onnx"))
    save_bundle(path, _manifest(), {"memory": np.zeros((M, D), np.float32)})
    return path


def _rewrite(path, fn):
    doc = json.loads((path / BUNDLE_FILE).read_text())
    fn(doc)
    (path / BUNDLE_FILE).write_text(json.dumps(doc))


def test_round_trip_and_stream(bundle):
    b = check_bundle(bundle)
    assert b.manifest.to_dict() == _manifest()
    assert b.state["memory"].shape == (M, D)
    runner = StreamRunner.from_bundle(b)
    frames = np.full((5, H, W, 1), 7, np.uint8)
    scores = runner.score_frames(frames, b.state)
    np.testing.assert_allclose(scores["psnr"], 7.0)
    assert scores["psnr"].size == 5 - CLIP + 1
    state = runner.batched_state(1)
    for _ in range(3):  # the caller carries the state: memory_out feeds memory_in
        out = runner.step(frames[None, :CLIP], state)
        state = out.state
    np.testing.assert_allclose(state["memory"], 3.0)
    assert out.extras["error_map"].shape == (1, 2, 2)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: d["graph"].update(frames_input="clip"), "graph inputs"),
        (lambda d: d["graph"]["state"][0].update(input="mem"), "graph inputs"),
        (lambda d: d["graph"]["state"][0].update(shape=[M, D + 1]), "shape"),
        (lambda d: d["graph"].update(batch=4), "batch"),
        (lambda d: d["graph"].update(batch="dynamic"), "fixed batch"),
        (lambda d: d["input"].update(height=16), "shape"),
        (lambda d: d["input"].update(color="rgb"), "shape"),
        (lambda d: d["graph"]["extra_outputs"].update(pred="pred"), "outputs"),
    ],
)
def test_mismatched_manifest_rejected(bundle, breakage, message):
    _rewrite(bundle, breakage)
    with pytest.raises(BundleError, match=message):
        check_bundle(bundle)


def test_dynamic_batch_graph_accepted(tmp_path):
    path = tmp_path / "dyn"
    path.mkdir()
    onnx.save(_toy_graph("dynamic"), str(path / "model.onnx"))
    save_bundle(path, _manifest("dynamic"), {"memory": np.zeros((M, D), np.float32)})
    b = check_bundle(path)
    runner = StreamRunner.from_bundle(b)
    out = runner.step(np.zeros((3, CLIP, H, W, 1), np.uint8), runner.batched_state(3))
    assert out.scores["psnr"].shape == (3,) and out.state["memory"].shape == (3, M, D)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "model.onnx").write_bytes(b"\x00not onnx"), "cannot be loaded"),
        (lambda p: (p / "model.onnx").unlink(), "missing"),
        (lambda p: (p / "state.npz").unlink(), "state file"),
        (lambda p: (p / BUNDLE_FILE).write_text("{ nope"), "not valid JSON"),
        (lambda p: _rewrite(p, lambda d: d.update(schema_version=99)), "schema_version"),
        (lambda p: _rewrite(p, lambda d: d["score"]["weights"].update(extra=1.0)), "weights"),
        (
            lambda p: _rewrite(p, lambda d: d["score"].update(calibration={"psnr": {"location": 1.0, "scale": 0}})),
            "calibration",
        ),
        (lambda p: np.savez(p / "state.npz", memory=np.zeros((M + 1, D), np.float32)), "shape"),
    ],
)
def test_corrupt_bundle_rejected(bundle, damage, message):
    damage(bundle)
    with pytest.raises(BundleError, match=message):
        check_bundle(bundle)


def test_info_cli(bundle, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["info", str(bundle)])
    assert ok.exit_code == 0, ok.output
    assert "toy" in ok.output and "memory_in" in ok.output and "threshold" in ok.output
    as_json = runner.invoke(cli, ["info", str(bundle), "--json"])
    assert json.loads(as_json.output)["family"] == "toy"
    (bundle / "model.onnx").write_bytes(b"garbage")
    bad = runner.invoke(cli, ["info", str(bundle)])
    assert bad.exit_code == 2 and "cannot be loaded" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(cli, ["info", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_manifest_helper_is_not_mutated():
    a = _manifest()
    b = copy.deepcopy(a)
    assert a == b


def test_manifest_agrees_with_the_json_schema_and_precision_checked(bundle):
    jsonschema = pytest.importorskip("jsonschema")
    from vadedge.bundle import BUNDLE_JSON_SCHEMA, validate_manifest

    doc = _manifest()
    doc["graph"]["side_inputs"] = [
        {"name": "flow", "input": "flow", "shape": [1, H, W, 2], "dtype": "float32", "provider": {"name": "dis"}}
    ]
    jsonschema.validate(doc, BUNDLE_JSON_SCHEMA)
    validate_manifest(doc)
    assert load_bundle(bundle).precision == "fp32"
    doc["precision"] = "int8"
    with pytest.raises(BundleError, match="precision"):
        validate_manifest(doc)
    doc["precision"] = "int4"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, BUNDLE_JSON_SCHEMA)


def test_manifest_types_cover_the_json_schema():
    """Every property the JSON Schema describes is a field of the typed manifest, and vice versa."""
    import dataclasses

    from vadedge.bundle import (
        BUNDLE_JSON_SCHEMA,
        EngineSpec,
        GraphSpec,
        InputSection,
        LocalSpec,
        Manifest,
        MaskSpec,
        ScoreSpec,
        SideInputSpec,
        Stats,
        TensorSpec,
        ThresholdSpec,
    )

    props = BUNDLE_JSON_SCHEMA["properties"]
    graph = props["graph"]["properties"]
    score = props["score"]["properties"]
    pairs = [
        (Manifest, props),
        (InputSection, props["input"]["properties"]),
        (GraphSpec, graph),
        (TensorSpec, graph["state"]["items"]["properties"]),
        (SideInputSpec, graph["side_inputs"]["items"]["properties"]),
        (EngineSpec, props["engines"]["items"]["properties"]),
        (ScoreSpec, score),
        (Stats, score["calibration"]["oneOf"][1]["additionalProperties"]["properties"]),
        (ThresholdSpec, score["threshold"]["oneOf"][1]["properties"]),
        (LocalSpec, score["local"]["additionalProperties"]["properties"]),
        (MaskSpec, score["mask"]["properties"]),
    ]
    for cls, schema in pairs:
        assert {f.name for f in dataclasses.fields(cls)} == set(schema), cls.__name__


def test_info_does_not_import_torch(bundle):
    import subprocess
    import sys

    code = (
        "import sys\nfrom vadedge.cli import cli\n"
        f"try:\n    cli(['info', {str(bundle)!r}])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith("NO-TORCH")


def test_build_plugins_subcommand_dispatches(monkeypatch, tmp_path):
    plugins = pytest.importorskip("vadedge.export.plugins")
    calls = []

    def fake_build(out_dir, cuda_archs=None):
        calls.append((out_dir, cuda_archs))
        return tmp_path / "libvadedge_plugins.so"

    monkeypatch.setattr(plugins, "build_plugins", fake_build)
    res = CliRunner().invoke(cli, ["export", "build-plugins", "--out", str(tmp_path / "p"), "--cuda-archs", "87, 86"])
    assert res.exit_code == 0, res.output
    assert calls == [(tmp_path / "p", ["87", "86"])] and "libvadedge_plugins.so" in res.output
    helped = CliRunner().invoke(cli, ["export", "--help"], prog_name="vadedge")
    assert helped.exit_code == 0 and "vadedge export [OPTIONS] MODEL_DIR" in helped.output
    assert "build-plugins" in helped.output
