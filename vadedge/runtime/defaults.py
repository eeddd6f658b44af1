"""The default bundle shipped inside the package (`vadedge/assets/default/`), used when no model is given.

`VADEDGE_DEFAULT_BUNDLE=/path/to/bundle` overrides it (handy for tests and for fleets that pin
their own model without passing --model everywhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..bundle import BUNDLE_FILE, BundleError

ENV_VAR = "VADEDGE_DEFAULT_BUNDLE"


def default_bundle_path() -> Path:
    """Where the default bundle is looked up (the env override, else the package data folder)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "assets" / "default"


def default_bundle() -> Path:
    """The default bundle's folder; BundleError if this installation ships none."""
    path = default_bundle_path()
    if not (path / BUNDLE_FILE).is_file():
        where = f"${ENV_VAR}={path}" if os.environ.get(ENV_VAR) else str(path)
        raise BundleError(
            f"no default model in this vadedge installation ({where} has no {BUNDLE_FILE}); "
            f"pass --model BUNDLE (a folder written by `vadedge export`)"
        )
    return path
