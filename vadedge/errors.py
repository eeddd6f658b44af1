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
