"""The `vadedge`-domain ONNX functions (MemoryRead, MemoryUpdate, PrototypeFormation) against
`vadedge.train.memory` and `vadedge.train.models.mpn_dpu`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from vadedge.export.functions import DOMAIN, attach_functions, function_model  # noqa: E402
from vadedge.train.memory import l2_normalize, memory_read, memory_update  # noqa: E402

F32, F16, BOOL = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BOOL
B, K, M, D = 3, 12, 5, 8


def _session(model):
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _read_model(dtype=F32):
    return function_model(
        "MemoryRead",
        [("features", dtype, [B, K, D]), ("memory", dtype, [B, M, D])],
        [("query", dtype, [B, K, D]), ("read", dtype, [B, K, D])],
    )


def _update_model(dtype=F32):
    return function_model(
        "MemoryUpdate",
        [("query", dtype, [B, K, D]), ("memory", dtype, [B, M, D]), ("gate", BOOL, [B])],
        [("new_memory", dtype, [B, M, D])],
    )


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(B, K, D, generator=g) * 3
    memory = l2_normalize(torch.rand(B, M, D, generator=g))
    return feats, memory


def test_function_models_pass_full_check_and_declare_domain():
    for model in (_read_model(), _update_model()):
        onnx.checker.check_model(model, full_check=True)
        assert {(f.domain, f.name) for f in model.functions} == {(DOMAIN, model.graph.node[0].op_type)}
        assert any(o.domain == DOMAIN and o.version == 1 for o in model.opset_import)
        assert all(n.domain == "" for f in model.functions for n in f.node)  # standard ops only


def test_memory_read_matches_torch(data):
    feats, memory = data
    query, read = _session(_read_model()).run(None, {"features": feats.numpy(), "memory": memory.numpy()})
    q_ref = l2_normalize(feats)
    r_ref, _ = memory_read(q_ref, memory)
    np.testing.assert_allclose(query, q_ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(read, r_ref.numpy(), rtol=1e-5, atol=1e-6)


def test_memory_read_zero_features_use_the_eps_clamp(data):
    _, memory = data
    feats = np.zeros((B, K, D), np.float32)
    query, read = _session(_read_model()).run(None, {"features": feats, "memory": memory.numpy()})
    assert np.isfinite(query).all() and np.isfinite(read).all()
    np.testing.assert_allclose(query, 0.0)


@pytest.mark.parametrize("gate", [[True, True, True], [True, False, True], [False, False, False]])
def test_memory_update_matches_torch(data, gate):
    feats, memory = data
    query = l2_normalize(feats)
    g = torch.tensor(gate)
    (new,) = _session(_update_model()).run(None, {"query": query.numpy(), "memory": memory.numpy(), "gate": g.numpy()})
    ref = memory_update(query, memory, g)
    np.testing.assert_allclose(new, ref.numpy(), rtol=1e-5, atol=1e-6)
    for b, on in enumerate(gate):  # closed gates keep the stream's memory bit for bit
        if not on:
            np.testing.assert_array_equal(new[b], memory[b].numpy())
        else:
            assert not np.allclose(new[b], memory[b].numpy())


def test_memory_update_streams_are_independent(data):
    feats, memory = data
    query = l2_normalize(feats).numpy()
    sess = _session(_update_model())
    gate = np.ones(B, bool)
    (full,) = sess.run(None, {"query": query, "memory": memory.numpy(), "gate": gate})
    other = query.copy()
    other[1:] = np.random.default_rng(1).normal(size=other[1:].shape).astype(np.float32)
    (changed,) = sess.run(None, {"query": other, "memory": memory.numpy(), "gate": gate})
    np.testing.assert_array_equal(full[0], changed[0])  # softmax over K never mixes streams


def test_memory_read_is_type_polymorphic_fp16(data):
    """The same body runs at an FP16 call site (CastLike constants), close to the FP32 result."""
    feats, memory = data
    f16 = {"features": feats.numpy().astype(np.float16), "memory": memory.numpy().astype(np.float16)}
    q16, r16 = _session(_read_model(F16)).run(None, f16)
    r_ref, _ = memory_read(l2_normalize(feats), memory)
    assert q16.dtype == np.float16
    np.testing.assert_allclose(r16.astype(np.float32), r_ref.numpy(), atol=5e-3)


def test_memory_update_in_fp16_breaks_on_unchosen_items(data):
    """Why the FP16 pass keeps the memory nodes in FP32: the contract's 1e-12 clamp underflows to 0 in
    FP16, so an item that no query chose gets 0/0. Chosen items still match FP32 to FP16 precision."""
    feats, memory = data
    query = l2_normalize(feats)
    (n16,) = _session(_update_model(F16)).run(
        None,
        {
            "query": query.numpy().astype(np.float16),
            "memory": memory.numpy().astype(np.float16),
            "gate": np.ones(B, bool),
        },
    )
    ref = memory_update(query, memory, torch.ones(B, dtype=torch.bool)).numpy()
    chosen = torch.nn.functional.one_hot((query @ memory.transpose(1, 2)).argmax(-1), M).sum(1).numpy() > 0
    assert (~chosen).any(), "the fixture should leave some item unchosen"
    assert np.isnan(n16[~chosen]).all()
    np.testing.assert_allclose(n16[chosen].astype(np.float32), ref[chosen], atol=5e-3)


def test_attach_functions_rejects_old_opsets_and_unknown_ops():
    h = onnx.helper
    node = h.make_node("MemoryRead", ["f", "m"], ["q", "r"], domain=DOMAIN)
    graph = h.make_graph(
        [node],
        "g",
        [h.make_tensor_value_info("f", F32, [1, 2, 2]), h.make_tensor_value_info("m", F32, [1, 2, 2])],
        [h.make_tensor_value_info("r", F32, [1, 2, 2])],
    )
    with pytest.raises(ValueError, match="opset"):
        attach_functions(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    bad = h.make_graph(
        [h.make_node("Mystery", ["f"], ["r"], domain=DOMAIN)], "g", list(graph.input)[:1], list(graph.output)
    )
    with pytest.raises(ValueError, match="Mystery"):
        attach_functions(h.make_model(bad, opset_imports=[h.make_opsetid("", 18)]))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 18)])
    attach_functions(model)
    attach_functions(model)  # idempotent
    assert len(model.functions) == 1


# ---- vadedge::PrototypeFormation (MPN) ---------------------------------------------------------
N, MP = 20, 4  # positions, prototypes


def _prototype_model(dtype=F32, batch=B):
    return function_model(
        "PrototypeFormation",
        [("query", dtype, [batch, N, D]), ("weight", dtype, [MP, D])],
        [("prototypes", dtype, [batch, MP, D])],
    )


@pytest.fixture
def proto_data():
    g = torch.Generator().manual_seed(2)
    query = l2_normalize(torch.randn(B, N, D, generator=g))
    weight = torch.randn(MP, D, generator=g) * 2
    return query, weight


def test_prototype_formation_matches_torch(proto_data):
    from vadedge.train.models.mpn_dpu import prototype_formation

    query, weight = proto_data
    model = _prototype_model()
    assert [f.name for f in model.functions] == ["PrototypeFormation"]
    assert all(n.domain == "" for n in model.functions[0].node)
    (protos,) = _session(model).run(None, {"query": query.numpy(), "weight": weight.numpy()})
    ref = prototype_formation(query, weight)
    np.testing.assert_allclose(protos, ref.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=-1), 1.0, atol=1e-5)


def test_prototype_formation_softmax_is_over_positions_per_stream(proto_data):
    """Changing another stream's queries never changes a stream's prototypes (softmax over N, not B)."""
    query, weight = proto_data
    sess = _session(_prototype_model())
    (full,) = sess.run(None, {"query": query.numpy(), "weight": weight.numpy()})
    other = query.numpy().copy()
    other[1:] = -other[1:]
    (changed,) = sess.run(None, {"query": other, "weight": weight.numpy()})
    np.testing.assert_array_equal(full[0], changed[0])
    assert not np.allclose(full[1], changed[1])


def test_prototype_formation_zero_queries_use_the_eps_clamp():
    weight = np.ones((MP, D), np.float32)
    (protos,) = _session(_prototype_model()).run(None, {"query": np.zeros((B, N, D), np.float32), "weight": weight})
    assert np.isfinite(protos).all()
    np.testing.assert_array_equal(protos, 0.0)


def test_prototype_formation_dynamic_batch_and_fp16(proto_data):
    query, weight = proto_data
    model = _prototype_model(batch="B")
    (protos,) = _session(model).run(None, {"query": query.numpy()[:1], "weight": weight.numpy()})
    assert protos.shape == (1, MP, D)
    (p16,) = _session(_prototype_model(F16)).run(
        None, {"query": query.numpy().astype(np.float16), "weight": weight.numpy().astype(np.float16)}
    )
    assert p16.dtype == np.float16
    from vadedge.train.models.mpn_dpu import prototype_formation

    np.testing.assert_allclose(p16.astype(np.float32), prototype_formation(query, weight).numpy(), atol=1e-2)
