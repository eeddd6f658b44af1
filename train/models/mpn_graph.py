"""MPN as a pure function of (frames, θ): the adaptable parameters become explicit graph inputs.

DESIGN principle 6: after few-shot adaptation the runtime feeds the adapted θ' to the backend. For
ONNX Runtime that means graph inputs; `MPNWithParams` is the module to export for that (inputs
`frames` + one `theta.<parameter name>` per adaptable tensor, outputs one float32 [B] per score
component, optionally `pred`). A TensorRT engine instead keeps θ as named weights and is refitted
by name; the names are the same `MPN.adaptable_names` without the `theta.` prefix.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .mpn_model import MPN

PARAM_PREFIX = "theta."


def param_input_name(name: str) -> str:
    """Graph input name of adaptable parameter `name` (e.g. theta.decoder.head.0.weight)."""
    return PARAM_PREFIX + name


class MPNWithParams(nn.Module):
    """forward(frames uint8 [B, T+1, H, W, C], *θ) → score components (each float32 [B]) [, pred]."""

    def __init__(self, model: MPN, with_pred: bool = False) -> None:
        super().__init__()
        self.model = model.eval()
        self.names = model.adaptable_names
        self.with_pred = with_pred

    @property
    def input_names(self) -> list[str]:
        return ["frames"] + [param_input_name(n) for n in self.names]

    @property
    def output_names(self) -> list[str]:
        return list(self.model.score_components) + (["pred"] if self.with_pred else [])

    def example_inputs(self, batch: int = 1) -> tuple[torch.Tensor, ...]:
        """A zero clip and the model's own θ, in input order."""
        s = self.model.spec
        frames = torch.zeros(batch, self.model.clip_length, s.height, s.width, s.channels, dtype=torch.uint8)
        params = self.model.adaptable_parameters()
        return (frames, *(params[n].detach().clone() for n in self.names))

    def forward(self, frames: torch.Tensor, *theta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.stream_step(frames, {}, params=dict(zip(self.names, theta)))
        scores = tuple(out["scores"][k] for k in self.model.score_components)
        return scores + ((out["pred"],) if self.with_pred else ())


def export_onnx(model: MPN, path: str | Path, *, opset: int = 18, with_pred: bool = False) -> Path:
    """Write an ONNX graph whose adaptable parameters are inputs (static batch 1).

    Uses the dynamo exporter: the TorchScript tracer refuses `functional_call`. Opset 18 is the
    exporter's native opset; converting down to 17 currently fails in onnx's version converter.
    """
    path = Path(path)
    wrapper = MPNWithParams(model, with_pred).eval()
    with torch.no_grad():
        torch.onnx.export(wrapper, wrapper.example_inputs(), str(path), input_names=wrapper.input_names,
                          output_names=wrapper.output_names, opset_version=opset, dynamo=True)
    return path
