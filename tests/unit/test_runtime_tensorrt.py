"""TensorRT backend against a fake `tensorrt` module and a fake CUDA wrapper (no GPU, no TensorRT here).

The fake engine computes with ONNX Runtime on the toy bundle's graph, reading its inputs from and
writing its outputs to the fake device memory at the addresses the backend bound, so these tests
check the real plumbing: buffer sizes, host↔device copies, dynamic shapes, CUDA-graph capture and
replay, refit — and that the results equal the ONNX Runtime backend's.
"""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from vadedge.bundle import BundleError, load_bundle  # noqa: E402
from vadedge.errors import ConfigError, MissingDependencyError  # noqa: E402
from vadedge.runtime import Detector  # noqa: E402
from vadedge.runtime.backends.cuda import CudaApi, CudaError, CudaPythonApi, load_cuda_api  # noqa: E402
from vadedge.runtime.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from vadedge.runtime.backends.tensorrt import TensorRTBackend  # noqa: E402
from vadedge.runtime.scoring import ScoreRecipe  # noqa: E402
from tests.fakes.bundles import make_toy_bundle  # noqa: E402

CALIB = {"psnr": {"location": 45.0, "scale": 5.0}, "feature_distance": {"location": 0.04, "scale": 0.02}}


# ----------------------------------------------------------------------------- fakes
class FakeCuda(CudaApi):
    name = "fake-cuda"
    supports_graphs = True

    def __init__(self):
        self.mem: dict[int, bytearray] = {}
        self._next = 0x1000
        self.capturing = None
        self.log: list[str] = []

    def set_device(self, index):
        self.log.append(f"set_device {index}")

    def device_name(self, index):
        return "Fake GPU"

    def malloc(self, nbytes):
        ptr = self._next
        self._next += nbytes + 256
        self.mem[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr):
        del self.mem[ptr]

    def host_empty(self, shape, dtype):
        return np.zeros(shape, dtype)

    def free_host(self, array):
        pass

    def stream(self):
        return "stream"

    def stream_handle(self, stream):
        return 42

    def destroy_stream(self, stream):
        self.log.append("destroy_stream")

    def htod(self, dst, src, stream):
        assert self.capturing is None, "copies must stay outside the captured graph"
        assert src.nbytes <= len(self.mem[dst])
        self.mem[dst][: src.nbytes] = np.ascontiguousarray(src).tobytes()

    def dtoh(self, dst, src, stream):
        assert self.capturing is None
        dst[...] = np.frombuffer(bytes(self.mem[src][: dst.nbytes]), dst.dtype).reshape(dst.shape)

    def sync(self, stream):
        pass

    def begin_capture(self, stream):
        self.capturing = []

    def end_capture(self, stream):
        graph, self.capturing = self.capturing, None
        self.log.append("graph captured")
        return graph

    def launch(self, graph, stream):
        for fn in graph:
            fn()

    def destroy_graph(self, graph):
        self.log.append("graph destroyed")


def make_fake_trt(cuda: FakeCuda):
    """A fake `tensorrt` module: engines are JSON files naming an ONNX model to emulate."""
    trt = types.SimpleNamespace()
    trt.calls = []

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            self.severity = severity

    class TensorIOMode:
        INPUT, OUTPUT = "in", "out"

    class Weights:
        def __init__(self, a):
            self.array = np.array(a)

    class Engine:
        def __init__(self, spec):
            self.spec = spec
            self.sess = ort.InferenceSession(spec["onnx"], providers=["CPUExecutionProvider"])
            self.weights = {k: np.array(v, np.float32) for k, v in spec.get("weights", {}).items()}
            self.tensors = []
            for io, mode in ((self.sess.get_inputs(), TensorIOMode.INPUT), (self.sess.get_outputs(), TensorIOMode.OUTPUT)):
                for t in io:
                    if t.name in self.weights:
                        continue
                    shape = [d if isinstance(d, int) else (-1 if spec["batch"] == "dynamic" else spec["batch"])
                             for d in t.shape]
                    dtype = np.uint8 if "uint8" in t.type else np.float32
                    self.tensors.append((t.name, mode, tuple(shape), dtype))

        @property
        def num_io_tensors(self):
            return len(self.tensors)

        def _t(self, name):
            return next(t for t in self.tensors if t[0] == name)

        def get_tensor_name(self, i):
            return self.tensors[i][0]

        def get_tensor_mode(self, name):
            return self._t(name)[1]

        def get_tensor_shape(self, name):
            return self._t(name)[2]

        def get_tensor_dtype(self, name):
            return self._t(name)[3]

        def get_tensor_profile_shape(self, name, profile):
            shape = self._t(name)[2]
            mx = (self.spec["max_batch"],) + shape[1:]
            return ((1,) + shape[1:], mx, mx)

        def create_execution_context(self):
            return Context(self)

    class Context:
        def __init__(self, engine):
            self.engine, self.addr, self.shapes, self.executions = engine, {}, {}, 0

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def set_input_shape(self, name, shape):
            trt.calls.append(("set_input_shape", name, tuple(shape)))
            self.shapes[name] = tuple(shape)
            return True

        def _run(self):
            eng = self.engine
            b = None
            feed = {}
            for name, mode, shape, dtype in eng.tensors:
                if mode != TensorIOMode.INPUT:
                    continue
                shp = self.shapes.get(name, shape)
                if shp and shp[0] != -1:
                    b = shp[0] if len(shp) > 1 or name == "frames" else b
                n = int(np.prod(shp)) * np.dtype(dtype).itemsize
                feed[name] = np.frombuffer(bytes(cuda.mem[self.addr[name]][:n]), dtype).reshape(shp)
            feed.update({k: v for k, v in eng.weights.items()})
            outs = eng.sess.run(None, feed)
            for meta, val in zip(eng.sess.get_outputs(), outs):
                raw = np.ascontiguousarray(val).tobytes()
                cuda.mem[self.addr[meta.name]][: len(raw)] = raw
            self.executions += 1

        def execute_async_v3(self, stream_handle):
            assert stream_handle == 42
            trt.calls.append(("execute_async_v3", cuda.capturing is not None))
            if cuda.capturing is not None:
                cuda.capturing.append(self._run)
            else:
                self._run()
            return True

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            try:
                spec = json.loads(data)
            except ValueError:
                return None
            trt.calls.append(("deserialize", self.engine_host_code_allowed))
            return Engine(spec)

    class Refitter:
        def __init__(self, engine, logger):
            self.engine, self.pending = engine, {}

        def set_named_weights(self, name, w):
            trt.calls.append(("set_named_weights", name))
            if name not in self.engine.weights:
                return False
            self.pending[name] = w.array
            return True

        def get_missing_weights(self):
            return []

        def refit_cuda_engine(self):
            trt.calls.append(("refit",))
            self.engine.weights.update(self.pending)
            return True

    class Registry:
        def load_library(self, path):
            trt.calls.append(("load_library", path))
            return object()

    registry = Registry()
    trt.Logger, trt.TensorIOMode, trt.Weights, trt.Runtime, trt.Refitter = Logger, TensorIOMode, Weights, Runtime, Refitter
    trt.nptype = lambda dt: dt
    trt.get_plugin_registry = lambda: registry
    return trt


def add_engine(bundle_dir, *, batch, max_batch=4, weights=None, device="Fake GPU", sidecar=None):
    spec = {"onnx": str(bundle_dir / "model.onnx"), "batch": batch, "max_batch": max_batch,
            "weights": weights or {}}
    (bundle_dir / "fake.engine").write_text(json.dumps(spec))
    if sidecar is not None:
        (bundle_dir / "fake.engine.json").write_text(json.dumps(sidecar))
    doc = json.loads((bundle_dir / "vadedge.json").read_text())
    doc["engines"] = [{"file": "fake.engine", "precision": "fp32", "tensorrt": "10.3.0", "device": device}]
    (bundle_dir / "vadedge.json").write_text(json.dumps(doc))
    return load_bundle(bundle_dir)


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
    bundle = add_engine(make_toy_bundle(tmp_path / "b", batch=2, calibration=CALIB), batch=2,
                        sidecar={"plugin_libraries": ["libvadedge_plugins_dynamic.so"], "version_compatible": True})
    static_lib = tmp_path / "libvadedge_plugins.so"
    for lib in (static_lib, bundle.path / "libvadedge_plugins_dynamic.so"):
        lib.write_bytes(b"")
    opened = []

    def dlopen(path):
        opened.append(path)
        return types.SimpleNamespace(getCreators=1) if "dynamic" in path else types.SimpleNamespace()

    cuda = FakeCuda()
    trt = make_fake_trt(cuda)
    ort_det, trt_det, tb = detectors(bundle, cuda, trt, plugin_libraries=[str(static_lib)], dlopen=dlopen)
    # static-registration library: dlopen only; getCreators library (named by the sidecar): also the registry
    assert opened == [str(static_lib), str(bundle.path / "libvadedge_plugins_dynamic.so")]
    assert [c for c in trt.calls if c[0] == "load_library"] == [
        ("load_library", str(bundle.path / "libvadedge_plugins_dynamic.so"))]
    assert ("deserialize", True) in trt.calls  # version-compatible engines need host code allowed
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
    cuda = FakeCuda()
    trt = make_fake_trt(cuda)
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
    cuda = FakeCuda()
    trt = make_fake_trt(cuda)
    monkeypatch.setattr(adaptation, "adapt_parameters", lambda bun, clips, base: {"proto": np.full(4, 2.0, np.float32)})
    _, det, tb = detectors(bundle, cuda, trt)
    assert tb.refit_params == {"proto": "proto_in"} and not tb.param_inputs
    vid = videos(1, 10)[0]
    before = [det.process(f) for f in vid[:7]]
    assert cuda.log.count("graph captured") == 1
    det.adapt("default", clips=np.zeros((1, 5, 32, 32, 1), np.uint8))
    assert ("set_named_weights", "proto_in") in trt.calls and ("refit",) in trt.calls
    assert "graph destroyed" in cuda.log
    after = [det.process(f) for f in vid[7:]]
    assert cuda.log.count("graph captured") == 2  # recaptured with the new weights
    ref = Detector.load(b)
    want = [ref.process(f) for f in vid][7:]
    for got, w in zip(after, want):
        assert got.components["feature_distance"] == pytest.approx(w.components["feature_distance"] + 2.0, rel=1e-5)
    assert before[-1].score is not None


def test_engine_errors_are_clear(tmp_path):
    cuda = FakeCuda()
    trt = make_fake_trt(cuda)
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
        cudaMalloc=rec("cudaMalloc", (0, 1234)), cudaFree=rec("cudaFree", (0,)),
        cudaStreamCreate=rec("cudaStreamCreate", (0, 9)),
        cudaMemcpyAsync=rec("cudaMemcpyAsync", (0,)), cudaMemcpyKind=Enum(), cudaStreamCaptureMode=Enum(),
        cudaStreamBeginCapture=rec("begin", (0,)), cudaStreamEndCapture=rec("end", (0, "graph")),
        cudaGraphInstantiate=rec("instantiate", (0, "exec")), cudaGraphLaunch=rec("launch", (0,)),
        cudaSetDevice=rec("cudaSetDevice", (Err(2),)))
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
