"""The runtime SDK: sources → per-stream frame buffers → a backend → causal scoring → events → sinks.

Needs only numpy, OpenCV and ONNX Runtime; TensorRT (+ cuda-python or pycuda) and torch are
imported only by the backends that use them. Main entry points: `Detector.load`, `open_source`,
`default_bundle`.
"""

from ..scoring import CausalScorer, EventTracker, ScoreRecipe
from .buffer import FrameRing
from .defaults import default_bundle
from .detector import Detector, StreamHandle
from .results import Event, FrameResult
from .runner import StreamRunner
from .sources import Frame, Source, open_source

__all__ = [
    "Detector",
    "StreamHandle",
    "FrameResult",
    "Event",
    "FrameRing",
    "ScoreRecipe",
    "EventTracker",
    "CausalScorer",
    "open_source",
    "Source",
    "Frame",
    "default_bundle",
    "StreamRunner",
]
