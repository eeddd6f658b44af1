"""`refit_engine` against the recording TensorRT fake (no GPU here): weights pushed by name, and clear
errors for non-refittable engines, unknown or wrongly sized weights, missing partners, corrupt plans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.fakes.tensorrt import FakeTensorRT
from vadedge.export.tensorrt import EngineError, refit_engine, sidecar_path
from vadedge.runtime.engine import sha256_file


@pytest.fixture
def engine_file(tmp_path):
    path = tmp_path / "mpn.engine"
    path.write_bytes(FakeTensorRT.plan(flags=["REFIT"]))
    sidecar_path(path).write_text(json.dumps({"engine": "mpn.engine", "version_compatible": True}))
    return path


def test_refit_by_name_and_save(tmp_path, engine_file):
    trt = FakeTensorRT("10.3.0")
    new = {"proto.weight": np.arange(6, dtype=np.float32), "head.bias": np.ones(2, np.float32)}
    out = tmp_path / "mpn.adapted.engine"
    engine = refit_engine(engine_file, new, trt=trt, out_path=out)
    np.testing.assert_array_equal(engine.weights["proto.weight"], np.arange(6))
    assert ("deserialize_cuda_engine", True) in trt.calls  # version-compatible: host code allowed
    assert ("set_named_weights", "proto.weight", 6) in trt.calls and ("refit_cuda_engine",) in trt.calls
    plan = json.loads(out.read_bytes()[len(b"PLAN:") :])  # the refitted plan was serialised
    assert plan["refitted"] and plan["weights"]["proto.weight"] == list(range(6))
    doc = json.loads(sidecar_path(out).read_text())
    assert doc["engine"] == out.name and doc["refitted_weights"] == ["head.bias", "proto.weight"]
    assert doc["engine_sha256"] == sha256_file(out)


def test_refit_an_in_memory_engine(engine_file):
    trt = FakeTensorRT("11.4.0")
    engine = trt.Runtime(None).deserialize_cuda_engine(engine_file.read_bytes())
    same = refit_engine(engine, {"head.bias": np.full(2, 3, np.float32)}, trt=trt)
    assert same is engine and float(engine.weights["head.bias"][0]) == 3


def test_refit_errors(engine_file, tmp_path):
    with pytest.raises(EngineError, match="not refittable"):
        refit_engine(engine_file, {"head.bias": np.ones(2)}, trt=FakeTensorRT(refittable=False))
    with pytest.raises(EngineError, match=r"not refittable in this engine: conv9.weight"):
        refit_engine(engine_file, {"conv9.weight": np.ones(2)}, trt=FakeTensorRT())
    with pytest.raises(EngineError, match="element count"):
        refit_engine(engine_file, {"head.bias": np.ones(3, np.float32)}, trt=FakeTensorRT())
    with pytest.raises(EngineError, match="supplied together.*proto.weight"):
        refit_engine(
            engine_file,
            {"head.bias": np.ones(2, np.float32)},
            trt=FakeTensorRT(weight_groups=[["head.bias", "proto.weight"]]),
        )
    with pytest.raises(EngineError, match="no weights"):
        refit_engine(engine_file, {}, trt=FakeTensorRT())
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\x00junk")
    with pytest.raises(EngineError, match="could not deserialise bad.engine"):
        refit_engine(bad, {"head.bias": np.ones(2, np.float32)}, trt=FakeTensorRT())
    with pytest.raises(EngineError, match="does not exist"):
        refit_engine(tmp_path / "none.engine", {"head.bias": np.ones(2)}, trt=FakeTensorRT())
