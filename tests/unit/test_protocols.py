"""The family contracts (train/protocols.py): every registered family meets them, capabilities are detected
structurally, and the registry rejects a family that breaks them with a message naming what is missing."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from vadedge.train.protocols import (  # noqa: E402
    AdaptableModel,
    CustomLoader,
    HostInputs,
    PreparesData,
    SelectsParameters,
    StreamModel,
    TrainingTask,
    missing_members,
)
from vadedge.train.registry import ModelEntry, get_model_entry, list_models, register_model  # noqa: E402

# capabilities each built-in family has (the trainer / exporter / evaluator branch on these)
MODEL_CAPS = {"maam-net": {HostInputs}, "mpn": {AdaptableModel}}
TASK_CAPS = {
    "dlan-ac": {PreparesData},
    "maam-net": {CustomLoader},
    "mpn": {PreparesData, CustomLoader, SelectsParameters},
}


def _small(name: str):
    entry = get_model_entry(name)
    preset = min(entry.presets, key=lambda p: entry.presets[p]["model"]["height"] * entry.presets[p]["model"]["width"])
    return entry, entry.presets[preset]


@pytest.mark.parametrize("name", list_models())
def test_every_family_meets_the_contracts(name):
    entry, preset = _small(name)
    net = entry.build_model(preset["model"])
    assert isinstance(net, StreamModel)
    assert not missing_members(entry.task, TrainingTask)
    task = entry.make_task(net, dict(preset["train"]), generator=torch.Generator().manual_seed(0))
    assert isinstance(task, TrainingTask)
    for cap in (HostInputs, AdaptableModel):
        assert isinstance(net, cap) == (cap in MODEL_CAPS.get(name, set())), (name, cap.__name__)
    for cap in (PreparesData, CustomLoader, SelectsParameters):
        assert isinstance(task, cap) == (cap in TASK_CAPS.get(name, set())), (name, cap.__name__)


def test_an_adapted_stream_is_a_stream_model():
    entry, preset = _small("mpn")
    net = entry.build_model(preset["model"]).eval()
    n = net.clip_length
    frames = torch.randint(0, 256, (n, net.spec.height, net.spec.width, net.spec.channels), dtype=torch.uint8)
    assert isinstance(net.adapt_stream(frames, 0), StreamModel)


class _NoStep:
    def __init__(self, model, cfg, **kw):
        pass

    def state(self):
        return {}

    def load_state(self, state):
        pass


def test_registry_rejects_a_task_without_training_step():
    with pytest.raises(TypeError, match="training_step"):
        register_model("broken-task", task=_NoStep, presets={})


def test_build_model_names_what_a_non_stream_model_lacks():
    entry = ModelEntry("not-a-stream-model", build=lambda cfg: torch.nn.Linear(2, 2), task=_NoStep)
    with pytest.raises(TypeError, match="initial_state.*stream_step|stream_step"):
        entry.build_model({})
