"""`build_engine` against a recording fake of the tensorrt module (TensorRT is not installable here and
needs a GPU to build): both version paths, parser/build errors, timing cache, compatibility, refit
flags, plugins, dynamic batch, and the engine sidecar."""

from __future__ import annotations

import json
import types

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from tests.fakes.tensorrt import FakeParserError, FakeTensor, FakeTensorRT  # noqa: E402
from vadedge.errors import ConfigError, MissingDependencyError  # noqa: E402
from vadedge.export.tensorrt import EngineError, build_engine, graph_precision, load_sidecar, sidecar_path  # noqa: E402

DEVICE = {"name": "Orin", "compute_capability": "8.7"}


def _onnx(path, kind="fp32"):
    """A tiny graph: fp32 (Relu), fp16 (a Cast to float16), or int8 (QuantizeLinear/DequantizeLinear)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = []
    if kind == "fp32":
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
    elif kind == "fp16":
        nodes = [
            helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Cast", ["r"], ["y"], to=TensorProto.FLOAT),
        ]
    else:
        inits = [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], initializer=inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    onnx.save(model, path)
    return path


@pytest.fixture
def fp32(tmp_path):
    return _onnx(tmp_path / "model.onnx", "fp32")


def _build(tmp_path, onnx_path, trt, **kw):
    kw.setdefault("device_info", DEVICE)
    return build_engine(onnx_path, tmp_path / "out" / "model.engine", trt=trt, **kw)


def test_graph_precision(tmp_path):
    assert graph_precision(_onnx(tmp_path / "a.onnx", "fp32")) == "fp32"
    assert graph_precision(_onnx(tmp_path / "b.onnx", "fp16")) == "fp16"
    assert graph_precision(_onnx(tmp_path / "c.onnx", "int8")) == "int8"


def test_trt10_3_builder_flag_path_fp16(tmp_path, fp32):
    trt = FakeTensorRT("10.3.0")
    side = _build(tmp_path, fp32, trt, precision="fp16", workspace_mb=256)
    assert ("create_network", 0) in trt.calls  # weakly typed network
    assert trt.flags_set() == ["FP16"]
    assert ("set_memory_pool_limit", "WORKSPACE", 256 << 20) in trt.calls
    assert ("parse_from_file", str(fp32)) in trt.calls
    engine = tmp_path / "out" / "model.engine"
    assert engine.read_bytes().startswith(b"PLAN:")  # plain plan, no header
    assert side["strongly_typed"] is False and side["precision"] == "fp16"
    assert side["tensorrt"] == "10.3.0" and side["device"] == DEVICE
    assert [t["name"] for t in side["inputs"]] == ["frames", "memory_in"]
    assert side["inputs"][0] == {"name": "frames", "shape": [1, 5, 64, 64, 1], "dtype": "uint8"}
    assert side["batch"] == 1 and side["batch_profile"] is None
    on_disk = json.loads(sidecar_path(engine).read_text())
    assert on_disk == side
    assert load_sidecar(engine, tensorrt_version="10.3.0.30", device_name="Orin")["engine"] == "model.engine"


def test_trt10_3_int8_needs_qdq_and_sets_only_int8(tmp_path, fp32):
    trt = FakeTensorRT("10.3.0")
    with pytest.raises(ConfigError, match="Q/DQ"):
        _build(tmp_path, fp32, trt, precision="int8")
    assert trt.calls == []  # rejected before TensorRT is touched
    side = _build(tmp_path, _onnx(tmp_path / "m.int8.onnx", "int8"), trt, precision="int8")
    assert trt.flags_set() == ["INT8"] and side["builder_flags"] == ["INT8"]


@pytest.mark.parametrize("version", ["10.12.0", "10.16.1", "11.4.0"])
def test_strongly_typed_path_sets_no_precision_flags(tmp_path, version):
    trt = FakeTensorRT(version)
    side = _build(tmp_path, _onnx(tmp_path / "m.fp16.onnx", "fp16"), trt, precision="fp16")
    st = int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert ("create_network", 1 << st) in trt.calls
    assert trt.flags_set() == [] and side["strongly_typed"] is True
    side = _build(tmp_path, _onnx(tmp_path / "m.int8.onnx", "int8"), trt, precision="int8")
    assert side["builder_flags"] == []


def test_strongly_typed_precision_comes_from_the_graph(tmp_path, fp32):
    with pytest.raises(ConfigError, match="model.fp16.onnx"):
        _build(tmp_path, fp32, FakeTensorRT("11.4.0"), precision="fp16")
    with pytest.raises(ConfigError, match="fp16"):
        _build(tmp_path, _onnx(tmp_path / "h.onnx", "fp16"), FakeTensorRT("11.4.0"), precision="fp32")


def test_forcing_the_path(tmp_path, fp32):
    with pytest.raises(ConfigError, match="strongly typed networks only"):
        _build(tmp_path, fp32, FakeTensorRT("11.0.0"), precision="fp32", strongly_typed=False)
    trt = FakeTensorRT("10.3.0")
    side = _build(tmp_path, _onnx(tmp_path / "h.onnx", "fp16"), trt, precision="fp16", strongly_typed=True)
    assert side["strongly_typed"] and trt.flags_set() == []
    assert ("create_network", 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) in trt.calls


def test_the_fake_rejects_precision_flags_on_strong_networks(tmp_path, fp32):
    # guards the fake itself: TensorRT refuses FP16/INT8 flags with a strongly typed network
    trt = FakeTensorRT("10.12.0")
    config = trt.Builder(None).create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    logs = []
    builder = trt.Builder(types.SimpleNamespace(log=lambda s, m: logs.append(m)))
    assert builder.build_serialized_network(builder.create_network(1 << 1), config) is None and logs
    assert not hasattr(FakeTensorRT("11.0.0").BuilderFlag, "FP16")


def test_parser_errors_are_reported_with_plugin_hint(tmp_path, fp32):
    err = FakeParserError(
        3, "mem_read", "VadMemoryRead", "Plugin not found, are the plugin name, version, and namespace correct?"
    )
    trt = FakeTensorRT("10.3.0", parse_errors=[err])
    with pytest.raises(EngineError) as exc:
        _build(tmp_path, fp32, trt, precision="fp32")
    msg = str(exc.value)
    assert "mem_read" in msg and "VadMemoryRead" in msg and "Plugin not found" in msg
    assert "libvadedge_plugins.so" in msg
    assert not (tmp_path / "out" / "model.engine").exists()


def test_build_failure_reports_logged_errors(tmp_path, fp32):
    with pytest.raises(EngineError, match="Could not find any implementation"):
        _build(tmp_path, fp32, FakeTensorRT("10.3.0", build_fails=True), precision="fp32")
    assert not (tmp_path / "out" / "model.engine").exists()


def test_timing_cache_is_loaded_and_saved(tmp_path, fp32):
    cache = tmp_path / "timing.cache"
    trt = FakeTensorRT("10.3.0")
    _build(tmp_path, fp32, trt, precision="fp32", timing_cache=cache)
    assert ("create_timing_cache", b"") in trt.calls and ("set_timing_cache", False) in trt.calls
    assert cache.read_bytes() == b"+timings"
    trt2 = FakeTensorRT("10.3.0")
    _build(tmp_path, fp32, trt2, precision="fp32", timing_cache=cache)
    assert ("create_timing_cache", b"+timings") in trt2.calls
    assert cache.read_bytes() == b"+timings+timings"


def test_version_and_hardware_compatibility(tmp_path, fp32):
    trt = FakeTensorRT("10.16.0")
    side = _build(tmp_path, fp32, trt, precision="fp32", version_compatible=True, hardware_compatibility="ampere_plus")
    assert "VERSION_COMPATIBLE" in trt.flags_set()
    assert ("hardware_compatibility_level", trt.HardwareCompatibilityLevel.AMPERE_PLUS) in trt.calls
    assert side["version_compatible"] and side["hardware_compatibility"] == "ampere_plus"
    with pytest.raises(ConfigError, match="hardware_compatibility"):
        _build(tmp_path, fp32, trt, precision="fp32", hardware_compatibility="turing")


def test_refittable_engines(tmp_path, fp32):
    trt = FakeTensorRT("10.3.0")
    assert _build(tmp_path, fp32, trt, precision="fp32", refittable=True)["refittable"] is True
    assert trt.flags_set() == ["REFIT"]
    trt = FakeTensorRT("11.4.0")
    side = _build(tmp_path, fp32, trt, precision="fp32", refittable=["proto.weight", "head.bias"])
    assert trt.flags_set() == ["REFIT_INDIVIDUAL"]
    assert [c[1] for c in trt.calls if c[0] == "mark_weights_refittable"] == ["proto.weight", "head.bias"]
    assert side["refittable"] == ["proto.weight", "head.bias"]
    with pytest.raises(ConfigError, match="not in the network"):
        _build(tmp_path, fp32, FakeTensorRT("11.4.0"), precision="fp32", refittable=["nope"])


class _Lib:
    """What ctypes.CDLL returns for a plugin library; `dynamic` = exports getCreators (loadLibrary variant)."""

    def __init__(self, dynamic):
        if dynamic:
            self.getCreators = object()


def test_plugin_libraries(tmp_path, fp32):
    static_lib = tmp_path / "libvadedge_plugins.so"
    dynamic_lib = tmp_path / "libvadedge_plugins_dynamic.so"
    static_lib.write_bytes(b"\x7fELF static")
    dynamic_lib.write_bytes(b"\x7fELF dynamic")
    opened = []

    def dlopen(path):
        opened.append(path)
        return _Lib("dynamic" in path)

    trt = FakeTensorRT("10.3.0")
    side = _build(tmp_path, fp32, trt, precision="fp32", plugin_libraries=[static_lib], dlopen=dlopen)
    assert opened == [str(static_lib)] and not any(c[0] == "load_library" for c in trt.calls)
    assert side["plugins"][0]["file"] == "libvadedge_plugins.so" and side["plugins"][0]["loader"] == "dlopen"
    assert side["plugin_libraries"] == ["libvadedge_plugins.so"]
    # version-compatible engines serialise the loadLibrary variant into the plan
    trt = FakeTensorRT("10.16.0")
    side = _build(
        tmp_path, fp32, trt, precision="fp32", plugin_libraries=[dynamic_lib], dlopen=dlopen, version_compatible=True
    )
    assert ("load_library", str(dynamic_lib)) in trt.calls
    assert ("plugins_to_serialize", [str(dynamic_lib)]) in trt.calls
    with pytest.raises(ConfigError, match="dynamic"):
        _build(
            tmp_path,
            fp32,
            FakeTensorRT("10.16.0"),
            precision="fp32",
            plugin_libraries=[static_lib],
            dlopen=dlopen,
            version_compatible=True,
        )
    with pytest.raises(ConfigError, match="does not exist"):
        _build(tmp_path, fp32, FakeTensorRT("10.3.0"), precision="fp32", plugin_libraries=[tmp_path / "no.so"])


def test_dynamic_batch_gets_an_optimisation_profile(tmp_path, fp32):
    trt = FakeTensorRT(
        "10.3.0", inputs=[FakeTensor("frames", (-1, 5, 64, 64, 1)), FakeTensor("memory_in", (-1, 10, 32))]
    )
    side = _build(tmp_path, fp32, trt, precision="fp32", batch_profile=(1, 4, 16))
    (profile,) = [c[1] for c in trt.calls if c[0] == "add_optimization_profile"]
    assert profile["frames"] == ((1, 5, 64, 64, 1), (4, 5, 64, 64, 1), (16, 5, 64, 64, 1))
    assert profile["memory_in"] == ((1, 10, 32), (4, 10, 32), (16, 10, 32))
    assert side["batch"] == "dynamic" and side["batch_profile"] == [1, 4, 16]
    trt = FakeTensorRT("10.3.0", inputs=[FakeTensor("frames", (1, 5, -1, 64, 1))])
    with pytest.raises(ConfigError, match="other than the batch"):
        _build(tmp_path, fp32, trt, precision="fp32")
    with pytest.raises(ConfigError, match="batch_profile"):
        _build(
            tmp_path,
            fp32,
            FakeTensorRT("10.3.0", inputs=[FakeTensor("x", (-1, 4))]),
            precision="fp32",
            batch_profile=(4, 2, 8),
        )


def test_bad_arguments_and_missing_tensorrt(tmp_path, fp32, monkeypatch):
    with pytest.raises(ConfigError, match="precision"):
        _build(tmp_path, fp32, FakeTensorRT(), precision="int4")
    with pytest.raises(ConfigError, match="does not exist"):
        _build(tmp_path, tmp_path / "missing.onnx", FakeTensorRT(), precision="fp32")
    import builtins

    real_import = builtins.__import__

    def no_trt(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_trt)
    with pytest.raises(MissingDependencyError, match=r"vadedge\[trt\]"):
        build_engine(fp32, tmp_path / "e.engine", precision="fp32")


def test_sidecar_rejects_corrupt_or_mismatched_engines(tmp_path, fp32):
    _build(tmp_path, fp32, FakeTensorRT("10.3.0"), precision="fp32")
    engine = tmp_path / "out" / "model.engine"
    side = sidecar_path(engine)
    good = side.read_text()
    with pytest.raises(EngineError, match="TensorRT 10.3.0 but this machine has 10.16"):
        load_sidecar(engine, tensorrt_version="10.16.1")
    with pytest.raises(EngineError, match="built on Orin"):
        load_sidecar(engine, device_name="NVIDIA GeForce RTX 4090")
    engine.write_bytes(engine.read_bytes() + b"garbage")
    with pytest.raises(EngineError, match="SHA-256"):
        load_sidecar(engine)
    side.write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        load_sidecar(engine)
    side.write_text(json.dumps({**json.loads(good), "schema": "other"}))
    with pytest.raises(EngineError, match="not a vadedge engine sidecar"):
        load_sidecar(engine)
    side.unlink()
    with pytest.raises(EngineError, match="no sidecar"):
        load_sidecar(engine)
