"""Hypothesis profiles for the fuzz suite.

``ci`` (default) keeps the whole suite well under two minutes; ``long`` is the local profile
(>= 10,000 examples per target). Select with ``VADEDGE_FUZZ_PROFILE=long pytest tests/fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("long", max_examples=10_000, **_COMMON)
settings.load_profile(os.environ.get("VADEDGE_FUZZ_PROFILE", "ci"))
