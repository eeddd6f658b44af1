"""`vadedge.bench` arithmetic and parsing: SGEMM GFLOP/s, achieved GFLOP/s, share of peak, MAC counting."""

from __future__ import annotations

import numpy as np
import pytest

from vadedge.bench import achieved_gflops, gemm_gflops, parse_backends, parse_sizes, peak_share, stream_counts
from vadedge.bench.gmac import conv_macs, conv_transpose_macs, matmul_macs
from vadedge.bench.peak import measure_peak, numpy_sgemm
from vadedge.errors import ConfigError


def test_gemm_gflops_is_two_n_cubed_per_second():
    assert gemm_gflops(1000, 2.0) == pytest.approx(1.0)  # 2e9 FLOP in 2 s
    assert gemm_gflops(2048, 0.1) == pytest.approx(2 * 2048**3 / 0.1 / 1e9)
    with pytest.raises(ValueError):
        gemm_gflops(10, 0.0)


def test_achieved_gflops_and_share_of_peak():
    # 1.1 GMAC per frame at 50 frames/s = 110 GFLOP/s; against a 148 GFLOP/s SGEMM that is 74.3 %
    g = achieved_gflops(1.1, 50.0)
    assert g == pytest.approx(110.0)
    assert peak_share(g, 148.0) == pytest.approx(110.0 / 148.0)
    with pytest.raises(ValueError):
        peak_share(1.0, 0.0)


def test_sgemm_measurement_returns_a_positive_rate():
    gflops, _ = numpy_sgemm(n=64, threads=1, repeats=1)
    assert gflops > 0
    peak = measure_peak(threads=1, n=64, repeats=1, libraries=("numpy",))
    assert peak.library == "numpy" and peak.gflops == peak.by_library["numpy"] and peak.n == 64


def test_mac_formulas():
    # Conv 3x3, 8 -> 16 channels, output 1x16x10x12: each output sums 8*3*3 products
    assert conv_macs((1, 16, 10, 12), (16, 8, 3, 3)) == 16 * 10 * 12 * 8 * 9
    # grouped conv (groups=2): weight is (16, 4, 3, 3)
    assert conv_macs((1, 16, 10, 12), (16, 4, 3, 3)) == 16 * 10 * 12 * 4 * 9
    # ConvTranspose: input 1x8x5x6, weight (C_in=8, C_out=16, 2, 2)
    assert conv_transpose_macs((1, 8, 5, 6), (8, 16, 2, 2)) == 8 * 5 * 6 * 16 * 4
    assert matmul_macs((2, 3, 7), (2, 3, 5)) == 2 * 3 * 5 * 7


def test_count_gmac_on_a_small_graph():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from vadedge.bench.gmac import count_gmac

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.random((4, 2, 3, 3), dtype=np.float32), "w1")
    w2 = numpy_helper.from_array(rng.random((4, 3, 2, 2), dtype=np.float32), "w2")
    m = numpy_helper.from_array(rng.random((12, 5), dtype=np.float32), "m")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("ConvTranspose", ["c1", "w2"], ["c2"], strides=[2, 2]),
        helper.make_node("Reshape", ["c2", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["y"]),
    ]
    shape = numpy_helper.from_array(np.array([1, -1, 12], np.int64), "shape")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w1, w2, m, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(model, str(p))
        gmac = count_gmac(p, {"x": np.zeros((1, 2, 6, 6), np.float32)})
    conv = 4 * 6 * 6 * 2 * 9
    convt = 4 * 6 * 6 * 3 * 4  # output 1x3x12x12
    mm = (3 * 12 * 12 // 12) * 5 * 12
    assert gmac * 1e9 == pytest.approx(conv + convt + mm)


def test_parsers():
    assert parse_backends("torch, ort-fp32,ort-fp32") == ["torch", "ort-fp32"]
    with pytest.raises(ConfigError, match="unknown backend 'ort-int4'"):
        parse_backends("ort-fp32,ort-int4")
    with pytest.raises(ConfigError):
        parse_backends("")
    assert stream_counts(8) == [1, 2, 4, 8]
    assert stream_counts(6) == [1, 2, 4, 6]
    assert stream_counts(0) == []
    assert parse_sizes("64x96, 128x192") == [(64, 96), (128, 192)]
    assert parse_sizes("none") == [] and parse_sizes(None) == []
    with pytest.raises(ConfigError, match="multiples of 8"):
        parse_sizes("65x96")
