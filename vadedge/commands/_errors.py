"""Shared CLI error handling: user mistakes print 'Error: …' and exit with code 2, never a traceback."""

from __future__ import annotations

import functools
import sys

import click

from vadedge.errors import VadedgeError


def user_errors(fn):
    """Turn VadedgeError (bad path, bad data, missing extra…) into 'Error: …' on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VadedgeError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)

    return wrapper
