"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any, Optional

import click


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN and ±inf (which pass its comparisons silently)."""

    name = "float range"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv
