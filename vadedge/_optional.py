"""Lazy imports of optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from .errors import MissingDependencyError

# module name -> (pip extra, or None for a core dependency of vadedge; what it is needed for)
_EXTRAS: dict[str, tuple[Optional[str], str]] = {
    "torch": ("train", "training, evaluation and the torch backend"),
    "safetensors": ("train", "reading and writing checkpoints"),
    "sklearn": ("train", "AUC / EER in evaluation"),
    "tqdm": ("train", "progress bars"),
    "matplotlib": ("train", "plots"),
    "onnx": ("export", "ONNX export"),
    "onnxscript": ("export", "ONNX export"),
    "onnxruntime": (None, "the ONNX Runtime backend"),
    "tensorrt": ("trt", "TensorRT engines"),
    "pycuda": ("trt", "TensorRT device buffers"),
    "paho": ("integrations", "the MQTT event sink"),
    "prometheus_client": ("integrations", "the Prometheus metrics endpoint"),
    "pydantic": ("integrations", "the run config file (vadedge run --config)"),
    "yaml": ("integrations", "the run config file (vadedge run --config)"),
    "tritonclient": ("triton", "the Triton Inference Server client"),
}


def install_hint(name: str) -> str:
    """The sentence telling how to get module `name`: the extra that brings it, or the core install."""
    top = name.split(".")[0]
    extra, purpose = _EXTRAS.get(top, ("dev", "this feature"))
    if extra is None:
        return (
            f"'{top}' is needed for {purpose} but is not installed. It is a core dependency of vadedge "
            f"(no extra needed), so this installation is incomplete: pip install {top} "
            f"(or the build of it for your platform, e.g. a GPU or Jetson wheel)"
        )
    return f"'{top}' is needed for {purpose} but is not installed: pip install 'vadedge[{extra}]'"


def require(name: str) -> ModuleType:
    """Import `name` or raise MissingDependencyError telling which `pip install vadedge[extra]` fixes it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(install_hint(name)) from exc
