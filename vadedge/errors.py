"""Exceptions that mean "the user gave us something wrong" (CLI exit code 2) vs. a missing extra."""

from __future__ import annotations


class VadedgeError(Exception):
    """A user-facing problem (bad path, bad data, unknown name). The CLI prints it and exits 2."""


class DataError(VadedgeError):
    """A dataset folder, frame or label file is missing, empty, unreadable or inconsistent."""


class ConfigError(VadedgeError):
    """An unknown model name, preset or an invalid option value."""


class CheckpointError(VadedgeError):
    """A model directory that is not a vadedge checkpoint, or a damaged one."""


class MissingDependencyError(VadedgeError):
    """An optional dependency is not installed; the message names the extra that provides it."""


class CallbackError(VadedgeError):
    """An event callback raised. Every stream of the call was still processed; `results` holds the
    call's results (when it had any) and `errors` the (stream, exception) pairs, first one also
    chained as `__cause__`."""

    def __init__(self, errors: list, results: object = None) -> None:
        stream, exc = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"event callback failed on stream {stream!r}: {type(exc).__name__}: {exc}{more}")
        self.errors = errors
        self.results = results
