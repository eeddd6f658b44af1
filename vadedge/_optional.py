"""Lazy imports of optional dependencies with an error that names the extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module name -> (pip extra, what it is needed for)
_EXTRAS = {
    "torch": ("train", "training, evaluation and the torch backend"),
    "safetensors": ("train", "reading and writing checkpoints"),
    "sklearn": ("train", "AUC / EER in evaluation"),
    "tqdm": ("train", "progress bars"),
    "matplotlib": ("train", "plots"),
    "onnx": ("export", "ONNX export"),
    "onnxruntime": ("export", "the ONNX Runtime backend"),
    "tensorrt": ("trt", "TensorRT engines"),
    "pycuda": ("trt", "TensorRT device buffers"),
}


def require(name: str) -> ModuleType:
    """Import `name` or raise MissingDependencyError telling which `pip install vadedge[extra]` fixes it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        extra, purpose = _EXTRAS.get(top, ("dev", "this feature"))
        raise MissingDependencyError(
            f"'{top}' is needed for {purpose} but is not installed: pip install 'vadedge[{extra}]'"
        ) from exc
