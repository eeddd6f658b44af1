"""`vadedge bench`: latency, FPS, GMAC, share of the SGEMM peak, end-to-end vs model-only, memory — per backend.

    from vadedge.bench import BenchConfig, run_bench, format_table
    result = run_bench(BenchConfig(model="bundle/", backends=["ort-fp32", "ort-int8"]))
    print(format_table(result))

Every row is measured in the same run on the same frames, interleaved round by round, so ratios
hold under background load; absolute numbers depend on the machine (docs/benchmarks.md).
"""

from .core import BenchConfig, parse_sizes, run_bench, stream_counts
from .peak import achieved_gflops, gemm_gflops, measure_peak, peak_share
from .report import SCHEMA, format_table, plot_scaling, write_json
from .variants import BACKENDS, parse_backends

__all__ = [
    "BenchConfig",
    "run_bench",
    "format_table",
    "write_json",
    "plot_scaling",
    "SCHEMA",
    "BACKENDS",
    "parse_backends",
    "parse_sizes",
    "stream_counts",
    "measure_peak",
    "gemm_gflops",
    "achieved_gflops",
    "peak_share",
]
