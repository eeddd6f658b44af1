"""Serving many cameras from NVIDIA Triton Inference Server (issue 17, docs/deployment.md).

- `triton_repo.write_model_repository`: a Triton model repository for a bundle (a Python-backend
  model running our runtime core under the sequence batcher; ONNX Runtime / TensorRT configs with
  implicit state for GPU servers).
- `triton_backend`: the code the Python-backend model runs inside the server (per-sequence state).
- `client.RemoteDetector`: the SDK's `Detector` shape over gRPC (streams -> correlation ids).
- `server.TritonServer`: start the `tritonserver` bundled in the nvidia-pytriton wheel (tests, bench).

Nothing here is imported by `import vadedge`; tritonclient is needed only by the client.
"""
