"""Export trained models to ONNX / TensorRT bundles (filled in by the export issue)."""
