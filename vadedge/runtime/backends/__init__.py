"""Inference backends behind one interface (`Backend.run`): ONNX Runtime, TensorRT, torch.

Each backend module imports its heavy dependency lazily, so importing this package costs nothing.
"""

from .base import Backend, BackendOutput, GraphIO

__all__ = ["Backend", "BackendOutput", "GraphIO"]
