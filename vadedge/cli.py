"""The `vadedge` command line: a thin layer over the Python API. User mistakes exit with code 2."""

from __future__ import annotations

import click

from ._version import __version__
from .commands import register_commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vadedge")
def cli() -> None:
    """vadedge — learn what normal looks like for a fixed camera and flag unusual events.

    \b
    Typical flow:
      vadedge train --model mnad-pred --preset edge-s --data ./footage --out runs/cam0
      vadedge eval  --model runs/cam0 --data ./footage --protocol both
    """


register_commands(cli)


def main() -> None:
    cli(prog_name="vadedge")


if __name__ == "__main__":
    main()
