"""`vadedge models`: list registered families and presets with their cost."""

from __future__ import annotations

import click

from ._errors import user_errors
from ._logging import verbosity_options


@click.command()
@verbosity_options
@user_errors
def models() -> None:
    """List registered model families and their presets."""
    from vadedge.train.flops import count_parameters, gmac_per_frame
    from vadedge.train.registry import get_model_entry, list_models

    for name in list_models():
        entry = get_model_entry(name)
        click.echo(f"{name}: {entry.description}")
        for preset in sorted(entry.presets):
            cfg = entry.presets[preset]["model"]
            net = entry.build(cfg)
            click.echo(
                f"  {preset:8s} {cfg['height']}x{cfg['width']} {cfg['color']:4s} width {cfg['width_mult']:<5}"
                f" {count_parameters(net) / 1e6:6.2f} M params  {gmac_per_frame(net):7.3f} GMAC/frame"
            )


command = models
