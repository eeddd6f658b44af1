"""TensorRT backend against a fake `tensorrt` module and a fake CUDA wrapper (no GPU, no TensorRT here).

The fake (tests/fakes/tensorrt.py) engine computes with ONNX Runtime on the toy bundle's graph, reading its inputs
from and writing its outputs to the fake device memory at the addresses the backend bound, so these tests
check the real plumbing: buffer sizes, host↔device copies, dynamic shapes, CUDA-graph capture and
replay, refit — and that the results equal the ONNX Runtime backend's.
"""

from __future__ import annotations

import hashlib
import json
import types

import numpy as np
import pytest

pytest.importorskip("onnx")

from tests.fakes.bundles import make_toy_bundle  # noqa: E402
from tests.fakes.tensorrt import FakeCuda, FakeTensorRT  # noqa: E402
from vadedge.bundle import BundleError, load_bundle  # noqa: E402
from vadedge.errors import ConfigError, MissingDependencyError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402
from vadedge.runtime.backends.cuda import CudaError, CudaPythonApi, load_cuda_api  # noqa: E402
from vadedge.runtime.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from vadedge.runtime.backends.tensorrt import TensorRTBackend  # noqa: E402
from vadedge.runtime.engine import EngineError, sidecar_path, write_sidecar  # noqa: E402
from vadedge.runtime.scoring import ScoreRecipe  # noqa: E402

CALIB = {"psnr": {"location": 45.0, "scale": 5.0}, "feature_distance": {"location": 0.04, "scale": 0.02}}


# ----------------------------------------------------------------------------- helpers
def add_engine(bundle_dir, *, batch, max_batch=4, weights=None, device="Fake GPU", sidecar=None):
    """A fake plan executing the bundle's model.onnx, listed in vadedge.json; `sidecar` = extra sidecar facts
    (a valid sidecar with the plan's SHA-256 is written when given)."""
    plan = FakeTensorRT.plan(
        onnx=str(bundle_dir / "model.onnx"), batch=batch, max_batch=max_batch, weights=weights or {}
    )
    (bundle_dir / "fake.engine").write_bytes(plan)
    if sidecar is not None:
        write_sidecar(
            bundle_dir / "fake.engine",
            {
                "precision": "fp32",
                "tensorrt": "10.3.0",
                "device": {"name": device},
                "inputs": [],
                "outputs": [],
                **sidecar,
            },
        )
    doc = json.loads((bundle_dir / "vadedge.json").read_text())
    doc["engines"] = [{"file": "fake.engine", "precision": "fp32", "tensorrt": "10.3.0", "device": device}]
    (bundle_dir / "vadedge.json").write_text(json.dumps(doc))
    return load_bundle(bundle_dir)


def make_fakes():
    cuda = FakeCuda()
    return cuda, FakeTensorRT("10.3.0", cuda=cuda)


def videos(n_streams, n_frames=12, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(n_frames)] for _ in range(n_streams)]


def run(det, vids):
    hs = [det.stream(f"s{i}") for i in range(len(vids))]
    out = []
    for t in range(len(vids[0])):
        res = det.process_many({h: v[t] for h, v in zip(hs, vids)})
        out.append([(r.score, dict(r.components)) for r in res.values()])
    return out, [h.state["memory"] for h in hs]


def same(a, b):
    (ra, sa), (rb, sb) = a, b
    for x, y in zip(ra, rb):
        for (s1, c1), (s2, c2) in zip(x, y):
            assert (s1 is None) == (s2 is None)
            if s1 is not None:
                assert s2 == pytest.approx(s1, rel=1e-6)
                for k in c1:
                    assert c2[k] == pytest.approx(c1[k], rel=1e-6)
    for m1, m2 in zip(sa, sb):
        np.testing.assert_allclose(m2, m1, rtol=1e-6)


def detectors(bundle, cuda, trt, **kw):
    recipe = ScoreRecipe.from_manifest(bundle.manifest.score)
    tb = TensorRTBackend(bundle, trt=trt, cuda=cuda, **kw)
    return Detector(bundle, OnnxRuntimeBackend(bundle), recipe), Detector(bundle, tb, recipe), tb


# ----------------------------------------------------------------------------- tests
def test_static_engine_matches_onnxruntime_and_replays_a_cuda_graph(tmp_path):
    bundle = add_engine(
        make_toy_bundle(tmp_path / "b", batch=2, calibration=CALIB),
        batch=2,
        sidecar={"plugin_libraries": ["libvadedge_plugins_dynamic.so"], "version_compatible": True},
    )
    static_lib = tmp_path / "libvadedge_plugins.so"
    for lib in (static_lib, bundle.path / "libvadedge_plugins_dynamic.so"):
        lib.write_bytes(b"")
    opened = []

    def dlopen(path):
        opened.append(path)
        return types.SimpleNamespace(getCreators=1) if "dynamic" in path else types.SimpleNamespace()

    cuda, trt = make_fakes()
    ort_det, trt_det, tb = detectors(bundle, cuda, trt, plugin_libraries=[str(static_lib)], dlopen=dlopen)
    # static-registration library: dlopen only; getCreators library (named by the sidecar): also the registry
    assert opened == [str(static_lib), str(bundle.path / "libvadedge_plugins_dynamic.so")]
    assert [c for c in trt.calls if c[0] == "load_library"] == [
        ("load_library", str(bundle.path / "libvadedge_plugins_dynamic.so"))
    ]
    assert ("deserialize_cuda_engine", True) in trt.calls  # version-compatible engines need host code allowed
    assert tb.use_graphs and tb.batch == 2 and "CUDA graph" in trt_det.describe()
    vids = videos(3)
    same(run(ort_det, vids), run(trt_det, vids))
    scored_calls = trt_det.calls
    assert scored_calls == (12 - 4) * 2  # 3 streams in batches of 2
    execs = [c for c in trt.calls if c[0] == "execute_async_v3"]
    assert execs == [("execute_async_v3", False), ("execute_async_v3", True)]  # warm-up, then capture
    assert tb.graph_launches == scored_calls - 1
    assert cuda.log.count("graph captured") == 1
    trt_det.close()
    assert not cuda.mem and "graph destroyed" in cuda.log and "destroy_stream" in cuda.log


def test_dynamic_engine_sets_input_shapes_and_never_captures(tmp_path):
    bundle = add_engine(make_toy_bundle(tmp_path / "b", batch="dynamic"), batch="dynamic", max_batch=4)
    cuda, trt = make_fakes()
    ort_det, trt_det, tb = detectors(bundle, cuda, trt)
    assert tb.batch is None and tb.max_batch == 4 and not tb.use_graphs
    vids = videos(3)
    same(run(ort_det, vids), run(trt_det, vids))
    assert ("set_input_shape", "frames", (3, 5, 32, 32, 1)) in trt.calls
    assert ("set_input_shape", "memory_in", (3, 4, 8)) in trt.calls
    assert all(not c[1] for c in trt.calls if c[0] == "execute_async_v3")
    with pytest.raises(ConfigError, match="profile maximum 4"):
        tb.run(np.zeros((5, 5, 32, 32, 1), np.uint8), {"memory": np.zeros((5, 4, 8), np.float32)})


def test_refit_installs_adapted_parameters_and_recaptures(tmp_path, monkeypatch):
    import vadedge.runtime.adaptation as adaptation

    b = make_toy_bundle(tmp_path / "b", batch=1, params="shared")
    bundle = add_engine(b, batch=1, weights={"proto_in": [0.0] * 4})  # params are engine weights here
    cuda, trt = make_fakes()
    monkeypatch.setattr(adaptation, "adapt_parameters", lambda bun, clips, base: {"proto": np.full(4, 2.0, np.float32)})
    _, det, tb = detectors(bundle, cuda, trt)
    assert tb.refit_params == {"proto": "proto_in"} and not tb.param_inputs
    vid = videos(1, 10)[0]
    before = [det.process(f) for f in vid[:7]]
    assert cuda.log.count("graph captured") == 1
    det.adapt("default", clips=np.zeros((1, 5, 32, 32, 1), np.uint8))
    assert ("set_named_weights", "proto_in", 4) in trt.calls and ("refit_cuda_engine",) in trt.calls
    assert "graph destroyed" in cuda.log
    after = [det.process(f) for f in vid[7:]]
    assert cuda.log.count("graph captured") == 2  # recaptured with the new weights
    ref = Detector.load(b)
    want = [ref.process(f) for f in vid][7:]
    for got, w in zip(after, want):
        assert got.components["feature_distance"] == pytest.approx(w.components["feature_distance"] + 2.0, rel=1e-5)
    assert before[-1].score is not None


def test_engine_errors_are_clear(tmp_path):
    cuda, trt = make_fakes()
    plain = load_bundle(make_toy_bundle(tmp_path / "none"))
    with pytest.raises(BundleError, match="no TensorRT engine"):
        TensorRTBackend(plain, trt=trt, cuda=cuda)
    bundle = add_engine(make_toy_bundle(tmp_path / "b", batch=1), batch=1, device="Other GPU")
    (bundle.path / "fake.engine").write_bytes(b"\x00 not an engine")
    with pytest.warns(UserWarning, match="not portable"):
        with pytest.raises(BundleError, match="could not deserialise"):
            TensorRTBackend(bundle, trt=trt, cuda=cuda)
    with pytest.raises(BundleError, match="does not exist"):
        TensorRTBackend(bundle, engine=tmp_path / "missing.engine", trt=trt, cuda=cuda)
    with pytest.raises(ConfigError, match="cuda"):
        TensorRTBackend(bundle, device="cpu", trt=trt, cuda=cuda)
    good = add_engine(make_toy_bundle(tmp_path / "c", batch=1), batch=1)
    with pytest.raises(ConfigError, match="does not exist"):
        TensorRTBackend(good, plugin_libraries=[str(tmp_path / "nope.so")], trt=trt, cuda=cuda)


def test_runtime_validates_the_sidecar_before_loading_the_engine(tmp_path, caplog):
    """Bug fixed in issue 13: the backend read the sidecar with a bare json.loads, so a tampered or
    swapped engine, or one built for another TensorRT or GPU, reached TensorRT unchecked."""
    bundle = add_engine(make_toy_bundle(tmp_path / "b", batch=1), batch=1, sidecar={})
    cuda, trt = make_fakes()
    TensorRTBackend(bundle, trt=trt, cuda=cuda).close()  # the untouched engine loads
    engine = bundle.path / "fake.engine"
    good = engine.read_bytes()
    engine.write_bytes(good.replace(b'"batch": 1', b'"batch": 1 '))  # tampered: still a valid plan
    cuda, trt = make_fakes()
    with pytest.raises(EngineError, match="SHA-256"):
        TensorRTBackend(bundle, trt=trt, cuda=cuda)
    assert not any(c[0] == "deserialize_cuda_engine" for c in trt.calls)  # rejected before TensorRT saw it
    engine.write_bytes(good)
    with pytest.raises(BundleError, match="TensorRT 10.3.0 but this machine has 10.16"):
        TensorRTBackend(bundle, trt=FakeTensorRT("10.16.1", cuda=cuda), cuda=cuda)
    add_engine(bundle.path, batch=1, device="Other GPU", sidecar={})
    with pytest.warns(UserWarning, match="not portable"):
        with pytest.raises(EngineError, match="built on Other GPU, this GPU is Fake GPU"):
            TensorRTBackend(load_bundle(bundle.path), trt=trt, cuda=cuda)
    add_engine(bundle.path, batch=1, sidecar={"hardware_compatibility": "ampere_plus", "device": {"name": "Other GPU"}})
    TensorRTBackend(load_bundle(bundle.path), trt=trt, cuda=cuda).close()  # hardware-compatible: allowed
    # a manifest that names a sidecar needs it; an engine given by hand without one loads with a warning
    doc = json.loads((bundle.path / "vadedge.json").read_text())
    doc["engines"][0]["sidecar"] = "fake.engine.json"
    (bundle.path / "vadedge.json").write_text(json.dumps(doc))
    sidecar_path(engine).unlink()
    with pytest.raises(EngineError, match="no sidecar"):
        TensorRTBackend(load_bundle(bundle.path), trt=trt, cuda=cuda)
    loose = tmp_path / "loose.engine"
    loose.write_bytes(good)
    with caplog.at_level("WARNING"):
        TensorRTBackend(load_bundle(bundle.path), engine=loose, trt=trt, cuda=cuda).close()
    assert "not checked" in caplog.text


def test_plugin_libraries_named_by_the_sidecar_are_checked_before_loading(tmp_path):
    lib_bytes = b"\x7fELF plugins"
    sha = hashlib.sha256(lib_bytes).hexdigest()
    bundle = add_engine(
        make_toy_bundle(tmp_path / "b", batch=1),
        batch=1,
        sidecar={
            "plugin_libraries": ["libvadedge_plugins.so"],
            "plugins": [{"file": "libvadedge_plugins.so", "sha256": sha}],
        },
    )
    lib = bundle.path / "libvadedge_plugins.so"
    lib.write_bytes(lib_bytes)
    opened = []
    cuda, trt = make_fakes()
    TensorRTBackend(bundle, trt=trt, cuda=cuda, dlopen=lambda p: opened.append(p) or types.SimpleNamespace()).close()
    assert opened == [str(lib)]
    lib.write_bytes(lib_bytes + b"+patched")  # a swapped library would run its code when loaded
    with pytest.raises(EngineError, match="libvadedge_plugins.so .*SHA-256"):
        TensorRTBackend(bundle, trt=trt, cuda=cuda, dlopen=lambda p: opened.append(p) or types.SimpleNamespace())
    assert len(opened) == 1
    add_engine(bundle.path, batch=1, sidecar={"plugin_libraries": ["../elsewhere/libx.so"]})
    with pytest.raises(EngineError, match="only file names"):
        TensorRTBackend(load_bundle(bundle.path), trt=trt, cuda=cuda)


def test_missing_tensorrt_or_cuda_bindings_name_the_extra(tmp_path, monkeypatch):
    import importlib

    bundle = make_toy_bundle(tmp_path / "b")
    with pytest.raises(MissingDependencyError, match=r"vadedge\[trt\]"):
        Detector.load(bundle, backend="tensorrt")
    real = importlib.import_module

    def no_cuda(name, *a, **k):
        if name.startswith(("cuda", "pycuda")):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_cuda)
    with pytest.raises(MissingDependencyError, match="cuda-python"):
        load_cuda_api()


def test_cuda_python_wrapper_calls_and_errors():
    calls = []

    class Err(int):
        name = "cudaErrorMemoryAllocation"

    class Enum:
        def __getattr__(self, k):
            return k

    def rec(name, ret):
        def f(*a):
            calls.append((name, a))
            return ret

        return f

    rt = types.SimpleNamespace(
        cudaMalloc=rec("cudaMalloc", (0, 1234)),
        cudaFree=rec("cudaFree", (0,)),
        cudaStreamCreate=rec("cudaStreamCreate", (0, 9)),
        cudaMemcpyAsync=rec("cudaMemcpyAsync", (0,)),
        cudaMemcpyKind=Enum(),
        cudaStreamCaptureMode=Enum(),
        cudaStreamBeginCapture=rec("begin", (0,)),
        cudaStreamEndCapture=rec("end", (0, "graph")),
        cudaGraphInstantiate=rec("instantiate", (0, "exec")),
        cudaGraphLaunch=rec("launch", (0,)),
        cudaSetDevice=rec("cudaSetDevice", (Err(2),)),
    )
    api = CudaPythonApi(rt)
    assert api.malloc(10) == 1234 and api.stream() == 9
    host = np.zeros(4, np.float32)
    api.htod(1234, host, 9)
    api.begin_capture(9)
    exe = api.end_capture(9)
    api.launch(exe, 9)
    names = [c[0] for c in calls]
    assert names == ["cudaMalloc", "cudaStreamCreate", "cudaMemcpyAsync", "begin", "end", "instantiate", "launch"]
    assert calls[2][1][2] == 16 and calls[2][1][3] == "cudaMemcpyHostToDevice"
    with pytest.raises(CudaError, match="cudaErrorMemoryAllocation"):
        api.set_device(0)
