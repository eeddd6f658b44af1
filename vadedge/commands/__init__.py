"""CLI subcommands, one module each. A module imports only click at import time (heavy imports go
inside the command) and exposes `command`; add its name to COMMANDS to register it."""

from __future__ import annotations

import importlib

import click

COMMANDS = (
    "train",
    "eval",
    "models",
    "export",
    "calibrate",
    "fit",
    "info",
    "synth",
    "run",
    "demo",
    "bench",
    "triton_repo",
)


def register_commands(group: click.Group) -> None:
    for name in COMMANDS:
        group.add_command(importlib.import_module(f"{__name__}.{name}").command)
