"""Causal scoring for the runtime: a stable import path for the scoring core in `vadedge.scoring`.

Calibrated per-component normalisation → fusion → EMA → hysteresis threshold with a minimum event
length → events; nothing looks at future frames. Implemented once, in `vadedge.scoring`.
"""

from ..scoring import CausalScorer, Event, EventTracker, ScoreRecipe

__all__ = ["ScoreRecipe", "EventTracker", "CausalScorer", "Event"]
