"""Calibration on normal footage: INT8 explicit quantisation (Q/DQ) and score statistics + thresholds.

* `vadedge.calibration.int8`: `ClipFeeds` (an ONNX Runtime calibration data reader that streams normal
  videos through the FP32 graph, state carried) and `quantize_int8` (static QDQ, MinMax / Entropy /
  Percentile, memory nodes kept in float).
* `vadedge.calibration.scores`: per-component robust statistics, the fused causal score and the
  false-alarm-rate threshold with hysteresis that vadedge.json carries for the runtime.
* `vadedge.calibration.footage`: which folders count as normal footage.
Submodules import onnxruntime lazily; nothing here needs torch.
"""
