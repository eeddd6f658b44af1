"""`vadedge info BUNDLE`: what a bundle holds (family, I/O, models, calibration) after checking it."""

from __future__ import annotations

from pathlib import Path

import click

from ._errors import user_errors
from ._logging import verbosity_options


@click.command("info")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print vadedge.json as JSON instead of a summary.")
@click.option("--no-check", is_flag=True, help="Skip loading each model file to compare it with vadedge.json.")
@verbosity_options
@user_errors
def info(bundle: Path, as_json: bool, no_check: bool) -> None:
    """Validate BUNDLE (vadedge.json schema, state file, model I/O) and print a summary."""
    from vadedge.bundle import load_bundle
    from vadedge.export.exporter import describe, manifest_json
    from vadedge.export.verify import check_bundle

    b = load_bundle(bundle)
    if not no_check:
        check_bundle(b)
    click.echo(manifest_json(bundle) if as_json else describe(bundle))


command = info
