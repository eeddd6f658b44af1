"""The plugin kernel math (csrc/vad_memory_math.h, csrc/vad_prototype_math.h), built for the host and called
through ctypes, against an independent NumPy reference, the ONNX function bodies of the vadedge domain (run in ONNX
Runtime) and train/memory.py; plus nvcc compiles of the CUDA kernels for Orin and a desktop GPU.

No GPU is used: the CUDA kernels are only compiled here, never run.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from vadedge.export.plugins import CSRC, HostKernels, build_host_library
from vadedge.export.plugins.host import find_cxx

EPS = 1e-12


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> HostKernels:
    if find_cxx() is None:
        pytest.skip("no C++ compiler to build the host kernel library")
    return HostKernels(build_host_library(tmp_path_factory.mktemp("hostlib")))


# ---- independent NumPy reference (float64) -------------------------------------------------
def np_read(features, memory):
    f = features.astype(np.float64)
    mem = memory.astype(np.float64)
    q = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), EPS)
    s = q @ mem.transpose(0, 2, 1)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return q, w @ mem


def np_update(query, memory, gate):
    q = query.astype(np.float64)
    mem = memory.astype(np.float64)
    s = q @ mem.transpose(0, 2, 1)  # B,K,M
    onehot = np.eye(mem.shape[1])[s.argmax(-1)]  # first maximum
    sm = np.exp(s - s.max(1, keepdims=True))
    sm /= sm.sum(1, keepdims=True)  # softmax over K
    v = sm * onehot
    v = v / np.maximum(v.max(1, keepdims=True), EPS)
    new = mem + v.transpose(0, 2, 1) @ q
    new /= np.maximum(np.linalg.norm(new, axis=-1, keepdims=True), EPS)
    return np.where(np.asarray(gate, bool).reshape(-1, 1, 1), new, mem)


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def sample(rng, b=3, k=16, m=10, d=32):
    features = rng.normal(size=(b, k, d)).astype(np.float32) * 3
    memory = unit(rng.random((b, m, d)))
    return features, memory


@pytest.mark.parametrize("shape", [(1, 4, 3, 8), (3, 16, 10, 32), (2, 64, 10, 128)])
def test_read_matches_numpy(kernels, shape):
    b, k, m, d = shape
    features, memory = sample(np.random.default_rng(0), b, k, m, d)
    q, r = kernels.memory_read(features, memory)
    q_ref, r_ref = np_read(features, memory)
    np.testing.assert_allclose(q, q_ref, atol=1e-6)
    np.testing.assert_allclose(r, r_ref, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 4, 3, 8), (3, 16, 10, 32), (2, 64, 10, 128)])
def test_update_matches_numpy(kernels, shape):
    b, k, m, d = shape
    rng = np.random.default_rng(1)
    features, memory = sample(rng, b, k, m, d)
    query = unit(features)
    gate = np.arange(b) % 2 == 0
    out = kernels.memory_update(query, memory, gate)
    np.testing.assert_allclose(out, np_update(query, memory, gate), atol=1e-5)
    # closed gate: bit-identical copy of the old memory; open gate: unit-norm items
    np.testing.assert_array_equal(out[~gate], memory[~gate])
    np.testing.assert_allclose(np.linalg.norm(out[gate], axis=-1), 1.0, atol=1e-5)


def test_update_ties_unused_items_and_zero_rows(kernels):
    rng = np.random.default_rng(2)
    memory = unit(rng.random((1, 6, 8)))
    memory[0, 4] = memory[0, 1]  # a tie: argmax must pick item 1, never 4
    query = np.repeat(memory[:, 1:2], 5, axis=1)  # every query nearest to items 1 and 4 equally
    out = kernels.memory_update(query, memory, np.array([True]))
    np.testing.assert_allclose(out, np_update(query, memory, [True]), atol=1e-6)
    np.testing.assert_array_equal(out[0, 4], memory[0, 4])  # tie loser gets no write (only renormalised)
    assert not np.allclose(out[0, 1], 0)
    # an all-zero feature row reads without NaN (eps clamp), query stays zero
    features = np.zeros((1, 2, 8), np.float32)
    q, r = kernels.memory_read(features, memory)
    assert np.all(np.isfinite(r)) and np.all(q == 0)
    np.testing.assert_allclose(r[0, 0], memory[0].mean(0), atol=1e-6)  # uniform weights


def test_streams_are_independent(kernels):
    rng = np.random.default_rng(3)
    features, memory = sample(rng, 2, 16, 10, 32)
    query = unit(features)
    both = kernels.memory_update(query, memory, np.array([True, True]))
    alone = kernels.memory_update(query[:1], memory[:1], np.array([True]))
    np.testing.assert_array_equal(both[:1], alone)
    q2, r2 = kernels.memory_read(features, memory)
    q1, r1 = kernels.memory_read(features[1:], memory[1:])
    np.testing.assert_array_equal(r2[1:], r1)


def test_rejects_mismatched_shapes(kernels):
    features, memory = sample(np.random.default_rng(4))
    with pytest.raises(ValueError, match="disagree"):
        kernels.memory_read(features, memory[:, :, :8])
    with pytest.raises(ValueError, match="disagree"):
        kernels.memory_update(unit(features), memory, np.ones(5, bool))
    with pytest.raises(ValueError, match="dimensions"):
        kernels.memory_read(features[0], memory)


# ---- the vadedge-domain ONNX function bodies, as the export contract defines them -------------
def _function_model():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def const(name, **kw):
        return helper.make_node("Constant", [], [name], **kw)

    read = helper.make_function(
        "vadedge",
        "MemoryRead",
        ["features", "memory"],
        ["query", "read"],
        [
            const("eps", value_float=EPS),
            const("last", value_ints=[-1]),
            helper.make_node("Mul", ["features", "features"], ["sq"]),
            helper.make_node("ReduceSum", ["sq", "last"], ["ss"], keepdims=1),
            helper.make_node("Sqrt", ["ss"], ["n"]),
            helper.make_node("Max", ["n", "eps"], ["nc"]),
            helper.make_node("Div", ["features", "nc"], ["query"]),
            helper.make_node("Transpose", ["memory"], ["memT"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["query", "memT"], ["s"]),
            helper.make_node("Softmax", ["s"], ["w"], axis=-1),
            helper.make_node("MatMul", ["w", "memory"], ["read"]),
        ],
        [helper.make_opsetid("", 17)],
    )
    update = helper.make_function(
        "vadedge",
        "MemoryUpdate",
        ["query", "memory", "gate"],
        ["new_memory"],
        [
            const("eps", value_float=EPS),
            const("last", value_ints=[-1]),
            const("b11", value_ints=[-1, 1, 1]),
            const("offon", value=helper.make_tensor("v", TensorProto.FLOAT, [2], [0.0, 1.0])),
            helper.make_node("Transpose", ["memory"], ["memT"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["query", "memT"], ["s"]),
            helper.make_node("ArgMax", ["s"], ["idx"], axis=-1, keepdims=0),
            helper.make_node("Shape", ["memory"], ["depth"], start=1, end=2),
            helper.make_node("OneHot", ["idx", "depth", "offon"], ["onehot"], axis=-1),
            helper.make_node("Softmax", ["s"], ["sm"], axis=1),
            helper.make_node("Mul", ["sm", "onehot"], ["v"]),
            helper.make_node("ReduceMax", ["v"], ["vmax"], axes=[1], keepdims=1),
            helper.make_node("Max", ["vmax", "eps"], ["vmc"]),
            helper.make_node("Div", ["v", "vmc"], ["v2"]),
            helper.make_node("Transpose", ["v2"], ["v2T"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["v2T", "query"], ["delta"]),
            helper.make_node("Add", ["memory", "delta"], ["u"]),
            helper.make_node("Mul", ["u", "u"], ["uu"]),
            helper.make_node("ReduceSum", ["uu", "last"], ["us"], keepdims=1),
            helper.make_node("Sqrt", ["us"], ["un"]),
            helper.make_node("Max", ["un", "eps"], ["unc"]),
            helper.make_node("Div", ["u", "unc"], ["new"]),
            helper.make_node("Reshape", ["gate", "b11"], ["g"]),
            helper.make_node("Where", ["g", "new", "memory"], ["new_memory"]),
        ],
        [helper.make_opsetid("", 17)],
    )
    f32 = lambda n, dims: helper.make_tensor_value_info(n, TensorProto.FLOAT, dims)  # noqa: E731
    bkd, bmd = ["B", "K", "D"], ["B", "M", "D"]
    graph = helper.make_graph(
        [
            helper.make_node("MemoryRead", ["features", "memory"], ["query", "read"], domain="vadedge", name="read"),
            helper.make_node(
                "MemoryUpdate", ["query", "memory", "gate"], ["new_memory"], domain="vadedge", name="update"
            ),
        ],
        "memory",
        [f32("features", bkd), f32("memory", bmd), helper.make_tensor_value_info("gate", TensorProto.BOOL, ["B"])],
        [f32("query", bkd), f32("read", bkd), f32("new_memory", bmd)],
    )
    model = helper.make_model(
        graph, functions=[read, update], opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("vadedge", 1)]
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def test_host_kernels_match_onnx_function_bodies(kernels):
    ort = pytest.importorskip("onnxruntime")
    model = _function_model()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    features, memory = sample(rng, 3, 16, 10, 32)
    gate = np.array([True, False, True])
    q_onnx, r_onnx, new_onnx = sess.run(None, {"features": features, "memory": memory, "gate": gate})
    q, r = kernels.memory_read(features, memory)
    np.testing.assert_allclose(q, q_onnx, atol=1e-6)
    np.testing.assert_allclose(r, r_onnx, atol=1e-5)
    np.testing.assert_allclose(kernels.memory_update(q, memory, gate), new_onnx, atol=1e-5)


def test_host_kernels_match_train_memory(kernels):
    torch = pytest.importorskip("torch")
    from vadedge.train.memory import l2_normalize, memory_read, memory_update

    rng = np.random.default_rng(6)
    features, memory = sample(rng, 2, 16, 10, 32)
    gate = np.array([True, False])
    with torch.no_grad():
        q_t = l2_normalize(torch.from_numpy(features))
        r_t, _ = memory_read(q_t, torch.from_numpy(memory))
        new_t = memory_update(q_t, torch.from_numpy(memory), torch.from_numpy(gate))
    q, r = kernels.memory_read(features, memory)
    np.testing.assert_allclose(q, q_t.numpy(), atol=1e-6)
    np.testing.assert_allclose(r, r_t.numpy(), atol=1e-5)
    np.testing.assert_allclose(kernels.memory_update(q, memory, gate), new_t.numpy(), atol=1e-5)


# ---- the CUDA kernels compile with nvcc for Orin (sm_87) and a desktop GPU (sm_86) -------------
@pytest.mark.parametrize("source", ["vad_memory_kernels.cu", "vad_prototype_kernels.cu"])
@pytest.mark.parametrize("arch", ["sm_87", "sm_86"])
def test_cuda_kernels_compile(arch, source, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not installed")
    obj = tmp_path / f"{source}_{arch}.o"
    proc = subprocess.run(
        [
            nvcc,
            "-std=c++17",
            "-O2",
            f"-arch={arch}",
            "-Werror",
            "all-warnings",
            "-c",
            str(CSRC / source),
            "-o",
            str(obj),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert obj.stat().st_size > 0
    # the SASS for the requested architecture is really in the object
    cuobjdump = shutil.which("cuobjdump")
    if cuobjdump:
        listing = subprocess.run([cuobjdump, "--list-elf", str(obj)], capture_output=True, text=True).stdout
        assert arch in listing


def test_host_kernels_match_the_exporters_function_bodies(kernels):
    """The same check against the function bodies the exporter really writes (vadedge.export.functions)."""
    ort = pytest.importorskip("onnxruntime")
    functions = pytest.importorskip("vadedge.export.functions")
    from onnx import TensorProto

    b, k, m, d = 2, 16, 10, 32
    f32 = TensorProto.FLOAT
    read_model = functions.function_model(
        "MemoryRead",
        [("features", f32, [b, k, d]), ("memory", f32, [b, m, d])],
        [("query", f32, [b, k, d]), ("read", f32, [b, k, d])],
    )
    update_model = functions.function_model(
        "MemoryUpdate",
        [("query", f32, [b, k, d]), ("memory", f32, [b, m, d]), ("gate", TensorProto.BOOL, [b])],
        [("new_memory", f32, [b, m, d])],
    )
    run = lambda model, feeds: ort.InferenceSession(  # noqa: E731
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, feeds)
    features, memory = sample(np.random.default_rng(7), b, k, m, d)
    gate = np.array([True, False])
    q_onnx, r_onnx = run(read_model, {"features": features, "memory": memory})
    q, r = kernels.memory_read(features, memory)
    np.testing.assert_allclose(q, q_onnx, atol=1e-6)
    np.testing.assert_allclose(r, r_onnx, atol=1e-5)
    (new_onnx,) = run(update_model, {"query": q, "memory": memory, "gate": gate})
    np.testing.assert_allclose(kernels.memory_update(q, memory, gate), new_onnx, atol=1e-5)


# ---- PrototypeFormation (MPN): host math vs NumPy, the exporter's function body and mpn_dpu.py ----
def np_prototypes(query, weight):
    q = query.astype(np.float64)
    s = q @ weight.astype(np.float64).T  # B,N,M
    a = np.exp(s - s.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)  # softmax over the N positions
    p = a.transpose(0, 2, 1) @ q  # B,M,D
    return p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), EPS)


def proto_sample(rng, b=2, n=64, m=10, d=16):
    return unit(rng.normal(size=(b, n, d))), (rng.normal(size=(m, d)) * 2).astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 64, 10, 16), (3, 300, 5, 32)])
def test_prototypes_match_numpy(kernels, shape):
    b, n, m, d = shape
    query, weight = proto_sample(np.random.default_rng(8), b, n, m, d)
    out = kernels.prototype_formation(query, weight)
    assert out.shape == (b, m, d)
    np.testing.assert_allclose(out, np_prototypes(query, weight), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)


def test_prototypes_zero_queries_streams_and_shape_errors(kernels):
    rng = np.random.default_rng(9)
    query, weight = proto_sample(rng)
    zero = kernels.prototype_formation(np.zeros_like(query), weight)
    assert np.all(zero == 0)  # eps clamp: 0 / 1e-12, no NaN
    both = kernels.prototype_formation(query, weight)
    np.testing.assert_array_equal(both[1:], kernels.prototype_formation(query[1:], weight))
    with pytest.raises(ValueError, match="disagree"):
        kernels.prototype_formation(query, weight[:, :4])
    with pytest.raises(ValueError, match="dimensions"):
        kernels.prototype_formation(query, weight[None])


def test_prototypes_match_the_exporters_function_body_and_torch(kernels):
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    functions = pytest.importorskip("vadedge.export.functions")
    from onnx import TensorProto

    from vadedge.train.models.mpn_dpu import prototype_formation

    b, n, m, d = 2, 64, 10, 16
    query, weight = proto_sample(np.random.default_rng(10), b, n, m, d)
    f32 = TensorProto.FLOAT
    model = functions.function_model(
        "PrototypeFormation", [("query", f32, [b, n, d]), ("weight", f32, [m, d])], [("prototypes", f32, [b, m, d])]
    )
    (p_onnx,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"query": query, "weight": weight}
    )
    with torch.no_grad():
        p_torch = prototype_formation(torch.from_numpy(query), torch.from_numpy(weight)).numpy()
    out = kernels.prototype_formation(query, weight)
    np.testing.assert_allclose(out, p_onnx, atol=1e-5)
    np.testing.assert_allclose(out, p_torch, atol=1e-5)
